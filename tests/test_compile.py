"""``training.compile``: the step through torch.compile computes what the eager step computes."""

from __future__ import annotations

import json

import pytest
import torch

from kdbench.results.store import ResultStore
from kdbench.suite import SuiteError, load_suite, plan
from kdbench.train import train_run
from tests.conftest import tiny_suite


def test_compile_mode_is_validated_with_the_nearest_choice_first(write_suite) -> None:
    with pytest.raises(SuiteError) as error:
        load_suite(write_suite(tiny_suite(training={"compile": "reduce-overhed"})))
    message = str(error.value)
    assert "training.compile" in message and "Did you mean 'reduce-overhead'?" in message
    assert "Available: reduce-overhead" in message


def test_compile_is_refused_with_deterministic_runs(write_suite) -> None:
    with pytest.raises(SuiteError) as error:
        load_suite(write_suite(tiny_suite(training={"compile": "max-autotune", "deterministic": True})))
    assert "training.compile: 'max-autotune' cannot be combined with training.deterministic: true" in str(error.value)
    load_suite(write_suite(tiny_suite(training={"compile": "off", "deterministic": True}), "ok.yaml"))


def test_yaml_off_means_off_and_leaves_run_ids_as_they_were(write_suite) -> None:
    before = [spec.run_id for spec in plan(load_suite(write_suite(tiny_suite(), "a.yaml")))]
    unquoted_off = write_suite(tiny_suite(), "b.yaml")
    unquoted_off.write_text(unquoted_off.read_text() + "training:\n  compile: off\n")
    assert [spec.run_id for spec in plan(load_suite(unquoted_off))] == before
    compiled = plan(load_suite(write_suite(tiny_suite(training={"compile": "default"}), "c.yaml")))
    assert all(spec.training["compile"] == "default" for spec in compiled)
    assert not {spec.run_id for spec in compiled} & set(before)


def test_a_compiled_run_trains_like_the_eager_run(write_suite, tmp_path) -> None:
    """Same student, same batches: the compiled graph reorders float arithmetic, nothing more."""
    schedule = {"epochs": 2, "batch_size": 16, "lr": 0.05, "milestones": [1], "lr_decay": 0.1}
    methods = {"KD": {"use": "kd"}}
    results = {}
    for mode in ("off", "default"):
        store = ResultStore(tmp_path / mode)
        document = tiny_suite(schedule=schedule, methods=methods, training={"compile": mode})
        runs = plan(load_suite(write_suite(document, f"{mode}.yaml")))
        for spec in runs:
            store.write_spec(spec)
        teacher, student = runs[0], runs[-1]
        train_run(store.run_dir(teacher.run_id))
        results[mode] = train_run(store.run_dir(student.run_id))
        lines = (store.run_dir(student.run_id) / "metrics.jsonl").read_text().splitlines()
        results[mode]["metrics"] = [json.loads(line) for line in lines]
        results[mode]["weights"] = torch.load(store.run_dir(student.run_id) / "model.pt", weights_only=False)["model"]
    eager, compiled = results["off"], results["default"]
    assert compiled["status"] == "done" and compiled["spec"]["training"]["compile"] == "default"
    for before, after in zip(eager["metrics"], compiled["metrics"], strict=True):
        for name, value in before["losses"].items():
            assert after["losses"][name] == pytest.approx(value, rel=1e-3, abs=1e-5), name
    # the checkpoint keeps the eager parameter names (students of this run and the CRD code load it)
    assert eager["weights"].keys() == compiled["weights"].keys()
    for name, tensor in eager["weights"].items():
        torch.testing.assert_close(compiled["weights"][name], tensor, rtol=1e-3, atol=1e-4)
