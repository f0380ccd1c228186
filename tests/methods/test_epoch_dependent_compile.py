"""DKD's warm-up and CTKD's learnt temperature (a custom autograd function, epoch-set buffers) under
``training.compile``: the compiled run trains like the eager one, epoch after epoch (the factors set
by ``set_epoch`` are graph inputs, not constants baked into the first epoch's graph)."""

from __future__ import annotations

import json

import pytest
import torch

from kdbench.results.store import ResultStore
from kdbench.suite import load_suite, plan
from kdbench.train import train_run
from tests.conftest import tiny_suite


@pytest.mark.slow
def test_compiled_epoch_dependent_methods_train_like_eager(write_suite, tmp_path) -> None:
    # one combination, one compilation: DKD's warm-up factor and CTKD's reversal strength both change
    method = {"use": ["ctkd", "dkd"], "ctkd": {"curriculum_epochs": 3}, "dkd": {"warmup_epochs": 3}}
    schedule = {"epochs": 3, "batch_size": 16, "lr": 0.05, "milestones": [2], "lr_decay": 0.1}
    results = {}
    for mode in ("off", "default"):
        store = ResultStore(tmp_path / mode)
        document = tiny_suite(schedule=schedule, methods={"M": method}, training={"compile": mode})
        runs = plan(load_suite(write_suite(document, f"{mode}.yaml")))
        for spec in runs:
            store.write_spec(spec)
        train_run(store.run_dir(runs[0].run_id))
        student_dir = store.run_dir(runs[-1].run_id)
        assert train_run(student_dir)["status"] == "done"
        lines = (student_dir / "metrics.jsonl").read_text().splitlines()
        results[mode] = {
            "metrics": [json.loads(line) for line in lines],
            "state": torch.load(student_dir / "checkpoint.pt", weights_only=False)["distiller"],
        }
    for eager, compiled in zip(results["off"]["metrics"], results["default"]["metrics"], strict=True):
        for name, value in eager["losses"].items():
            assert compiled["losses"][name] == pytest.approx(value, rel=1e-3, abs=1e-5), (eager["epoch"], name)
    for name, tensor in results["off"]["state"].items():
        torch.testing.assert_close(results["default"]["state"][name], tensor, rtol=1e-3, atol=1e-4)
