"""Training with the recipe keys: Adam, constant lr, a validation split, selection of the best
validation epoch, early stopping, class groups, per-class metrics; resume stays exact."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision.models._api as torchvision_api  # where torchvision's weights API downloads

from kdbench.metrics import metrics_from_confusion
from kdbench.results.store import ResultStore
from kdbench.suite import load_suite, plan
from kdbench.train import RunFailed, train_run
from tests.conftest import tiny_suite

RECIPE = {
    "epochs": 6,
    "batch_size": 16,
    "lr": 0.003,
    "milestones": [],
    "optimizer": "adam",
    "weight_decay": 0.0,
    "lr_schedule": "constant",
    "validation": {"fraction": 0.25, "seed": 3},
    "selection": {"metric": "val_loss"},
    "early_stopping": {"patience": 2},
}


def _teacher_dir(write_suite, root: Path, name: str = "suite.yaml", **changes) -> Path:
    store = ResultStore(root)
    suite = tiny_suite(schedule=dict(RECIPE), methods={"Vanilla": {"use": "vanilla"}}, **changes)
    runs = plan(load_suite(write_suite(suite, name)))
    for spec in runs.runs:
        store.write_spec(spec)
    return store.run_dir(runs.runs[0].run_id)


def _lines(run_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if k != "seconds"}
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


def test_selection_keeps_the_best_validation_epoch_and_records_both(write_suite, tmp_path: Path) -> None:
    run_dir = _teacher_dir(write_suite, tmp_path / "results")
    result = train_run(run_dir)
    lines = _lines(run_dir)
    assert all(
        {"val_loss", "val_top1", "val_weighted_f1", "test_weighted_f1", "test_per_class_f1"} <= set(m) for m in lines
    )
    best = min(lines, key=lambda m: m["val_loss"])  # the first of equal losses, as min() takes
    assert result["selected_epoch"] == best["epoch"] and result["top1_selected"] == best["test_top1"]
    assert result["top1_last"] == lines[-1]["test_top1"]
    # early stopping: training ends `patience` epochs after the best one, or at the last epoch
    assert len(lines) == min(RECIPE["epochs"], best["epoch"] + 2)
    assert result["stopped_early"] == (len(lines) < RECIPE["epochs"])
    # model.pt holds the selected epoch's weights
    kept = torch.load(run_dir / "model.pt", weights_only=False)
    assert kept["epoch"] == best["epoch"]
    selected = torch.load(run_dir / "selected.pt", weights_only=False)["model"]
    assert all(torch.equal(kept["model"][k], v) for k, v in selected.items())
    # the confusion matrices agree with the per-class numbers recorded beside them
    last = metrics_from_confusion(result["confusion_last"])
    assert last["weighted_f1"] == result["weighted_f1_last"] and last["top1"] == result["top1_last"]
    assert sum(map(sum, result["confusion_selected"])) == 24  # the tiny test split
    assert result["class_names"] == ["0", "1", "2", "3"]


def test_the_validation_split_is_held_out_of_training(write_suite, tmp_path: Path) -> None:
    run_dir = _teacher_dir(write_suite, tmp_path / "results")
    train_run(run_dir, stop_after_epochs=1)
    line = _lines(run_dir)[0]
    assert sum(json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])["val_support"]) == 12  # 25 % of 48
    assert sum(line["test_support"]) == 24


def test_resume_with_selection_and_early_stopping_is_exact(write_suite, tmp_path: Path) -> None:
    run_dir = _teacher_dir(write_suite, tmp_path / "a")
    reference_dir = _teacher_dir(write_suite, tmp_path / "b", name="other.yaml")
    assert train_run(run_dir, stop_after_epochs=2)["status"] == "interrupted"
    resumed = train_run(run_dir)
    uninterrupted = train_run(reference_dir)
    assert _lines(run_dir) == _lines(reference_dir)
    for key in ("selected_epoch", "top1_selected", "confusion_selected", "stopped_early", "epochs"):
        assert resumed[key] == uninterrupted[key]
    a, b = (torch.load(d / "model.pt", weights_only=False)["model"] for d in (run_dir, reference_dir))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_class_groups_train_a_coarser_task(write_suite, tmp_path: Path) -> None:
    data = {"name": "synthetic", "num_classes": 4, "image_size": 8, "train_size": 48, "test_size": 24}
    run_dir = _teacher_dir(write_suite, tmp_path / "results", dataset={**data, "groups": [[0, 1], [2, 3]]})
    result = train_run(run_dir, stop_after_epochs=None)
    assert result["class_names"] == ["0+1", "2+3"] and len(result["confusion_last"]) == 2


def test_missing_pretrained_weights_fail_the_run_naming_the_file(
    write_suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision_api, "load_state_dict_from_url", offline)
    run_dir = _teacher_dir(
        write_suite,
        tmp_path / "results",
        teachers={"tv_mobilenet_v2": {}},
        pairs=[["tv_mobilenet_v2", "resnet8"]],
        models={"tv_mobilenet_v2": {"weights": "imagenet"}},
    )
    with pytest.raises(RunFailed, match="mobilenet_v2-b0353104.pth"):
        train_run(run_dir)
    assert "mobilenet_v2-b0353104.pth" in json.loads((run_dir / "failed.json").read_text())["reason"]
