"""Epoch-dependent methods (DKD's warm-up, CTKD's curriculum) through the training loop: the loop tells
the distiller every epoch, and a run resumed at an epoch boundary ends bit-identical to one never
interrupted (the learnt temperature is checkpointed, the epoch-derived factors are recomputed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdbench.methods.base import Distiller
from kdbench.results.store import ResultStore
from kdbench.suite import load_suite, plan
from kdbench.train import train_run
from tests.conftest import tiny_suite

SCHEDULE = {"epochs": 4, "batch_size": 16, "lr": 0.05, "milestones": [3], "lr_decay": 0.1}
METHODS = {
    "DKD": {"use": "dkd", "warmup_epochs": 3},
    "CTKD": {"use": "ctkd", "curriculum_epochs": 3},
    "KD+warm-up": {"use": "kd", "warmup_epochs": 2},
}


def planned(write_suite, root: Path) -> tuple[ResultStore, list]:
    store = ResultStore(root)
    runs = plan(load_suite(write_suite(tiny_suite(schedule=SCHEDULE, methods=METHODS))))
    for spec in runs:
        store.write_spec(spec)
    return store, runs


def state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["distiller"]


@pytest.mark.parametrize("label", list(METHODS))
def test_resume_of_an_epoch_dependent_method_is_exact(write_suite, tmp_path, label, monkeypatch) -> None:
    store, runs = planned(write_suite, tmp_path / "results")
    train_run(store.run_dir(runs[0].run_id))  # the teacher
    spec = next(r for r in runs if r.method == label)
    interrupted = store.run_dir(spec.run_id)
    reference = tmp_path / "results" / "runs" / "reference"
    reference.mkdir()
    (reference / "spec.yaml").write_text((interrupted / "spec.yaml").read_text())

    seen: list[int] = []
    original = Distiller.set_epoch
    monkeypatch.setattr(Distiller, "set_epoch", lambda self, epoch: (seen.append(epoch), original(self, epoch))[1])
    assert train_run(interrupted, stop_after_epochs=2)["status"] == "interrupted"
    resumed = train_run(interrupted)
    assert seen == [0, 1, 2, 3]  # every epoch announced once, the resumed ones from the checkpoint's epoch
    uninterrupted = train_run(reference)

    assert resumed["top1_last"] == uninterrupted["top1_last"]
    for key, tensor in state(reference).items():
        assert torch.equal(state(interrupted)[key], tensor), key
    if label == "CTKD":
        theta = state(reference)["terms.ctkd.temperature.theta"]
        assert theta.item() != 1.0  # the temperature trained (and resumed) with the student
