"""What the CUDA tests share: the marker that skips them without a GPU, a small learnable suite, runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from kdbench.results.store import ResultStore
from kdbench.suite import load_suite, plan
from kdbench.train import train_run

#: every test module of tests/gpu starts with ``pytestmark = CUDA_ONLY``
CUDA_ONLY = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
#: learnable synthetic data (class prototypes plus noise), big enough to beat chance (25%) in two epochs;
#: train_size a multiple of the batch, so a compiled step sees one batch shape only
DATA = {"name": "synthetic", "num_classes": 4, "image_size": 16, "train_size": 2048, "test_size": 256, "noise": 0.1}
SCHEDULE = {"epochs": 2, "batch_size": 64, "lr": 0.05, "milestones": [2], "lr_decay": 0.1}
CHANCE_TOP1 = 100.0 / DATA["num_classes"]
#: a run that is not bit-reproducible (bf16, compiled, cuDNN autotuning) resumes within these of an
#: uninterrupted run: the last test top-1 within 4 points, every epoch's train loss within 2%
TOP1_TOLERANCE, LOSS_TOLERANCE = 4.0, 0.02


def cuda_suite(training: dict[str, Any], methods: dict | None = None) -> dict:
    """A resnet14 teacher and a resnet8 student on the learnable synthetic data, one seed."""
    return {
        "name": "cuda",
        "dataset": dict(DATA),
        "schedule": dict(SCHEDULE),
        "training": dict(training),
        "seeds": [0],
        "teachers": {"resnet14": {}},
        "pairs": [["resnet14", "resnet8"]],
        "methods": methods or {"Vanilla": {"use": "vanilla"}, "KD": {"use": "kd"}},
    }


def write_planned(document: dict, root: Path) -> tuple[ResultStore, list]:
    """The suite's YAML under ``root``, its runs' specs in a store there; returns (store, distinct runs)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "suite.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    store = ResultStore(root / "results")
    runs = list(plan(load_suite(path)).runs)
    for spec in runs:
        store.write_spec(spec)
    return store, runs


def metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl without wall-clock seconds."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=False, map_location="cpu")["model"]


def train_interrupted_and_whole(store: ResultStore, spec: Any, stop_after: int = 1) -> tuple[Path, Path]:
    """The run trained with a stop after ``stop_after`` epochs and resumed, and a copy trained whole."""
    run_dir = store.run_dir(spec.run_id)
    whole = run_dir.parent / "whole"  # a sibling: the teacher is found beside it
    whole.mkdir()
    (whole / "spec.yaml").write_text((run_dir / "spec.yaml").read_text())
    first = train_run(run_dir, device="cuda", stop_after_epochs=stop_after)
    assert first["status"] == "interrupted"
    train_run(run_dir, device="cuda")
    train_run(whole, device="cuda")
    return run_dir, whole
