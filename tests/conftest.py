"""Shared fixtures: tiny suites on tiny data, written to a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

TINY_DATA = {"name": "synthetic", "num_classes": 4, "image_size": 8, "train_size": 48, "test_size": 24}
TINY_SCHEDULE = {"epochs": 2, "batch_size": 16, "lr": 0.05, "milestones": [1], "lr_decay": 0.1}


def tiny_suite(**changes: Any) -> dict:
    """A suite small enough to train in a second: resnet8 teacher and student on 8x8 synthetic images
    (a model distilled into its own architecture, declared as self-distillation)."""
    suite = {
        "name": "tiny",
        "dataset": dict(TINY_DATA),
        "schedule": dict(TINY_SCHEDULE),
        "seeds": [0],
        "teachers": {"resnet8": {}},
        "pairs": [{"teacher": "resnet8", "student": "resnet8", "self_distillation": True}],
        "methods": {"Vanilla": {"use": "vanilla"}, "KD": {"use": "kd"}},
    }
    suite.update(changes)
    return suite


@pytest.fixture
def write_suite(tmp_path: Path):
    """``write_suite(document, name='suite.yaml') -> path`` of the YAML file."""

    def write(document: dict, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    return write


@pytest.fixture(autouse=True)
def single_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tiny models run faster on one intra-op thread than on several fighting over 2 cores.

    Not for the slurm tests: they compare jobs with in-process runs at the job's own thread count.
    """
    if request.node.get_closest_marker("slurm"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
