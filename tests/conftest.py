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


def fabricated_result(spec, **numbers: Any) -> dict:
    """A complete ``result.json`` record of ``spec`` (every required field, checked by the schema's writer),
    ``numbers`` (``top1_last=93.0``) over placeholder values: for tests that fabricate finished runs."""
    from kdbench.results.schema import make_result

    top1 = numbers.get("top1_last", 50.0)
    fields = {
        "run_id": spec.run_id,
        "status": "done",
        "spec": spec.to_dict(),
        "top1_last": top1,
        "top5_last": 100.0,
        "test_loss_last": 1.0,
        "top1_best": top1,
        "top5_best": 100.0,
        "best_epoch": 1,
        "epochs": 1,
        "init_epochs": 0,
        "wall_time_s": 1.0,
        "student_params": 1,
        "student_flops": 1,
        "teacher_top1": None,
        "teacher_weights": None,
        "teacher_sha256": None,
        "device": "cpu",
        "torch_version": torch.__version__,
        "kdbench_version": "test",
        "python_version": "3",
        "git_commit": None,
        "finished_at": "2026-01-01T00:00:00+00:00",
        "process_seconds": 1.0,
    }
    return make_result({**fields, **numbers})


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
