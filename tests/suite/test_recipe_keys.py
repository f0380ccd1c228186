"""Suite keys of kdbench.recipe: typed into the run config, checked with named problems, and
invisible to the run id at their defaults."""

from __future__ import annotations

import pytest

from kdbench.suite import SuiteError, load_suite, plan
from tests.conftest import tiny_suite


def _runs(write_suite, **schedule) -> list:
    suite = tiny_suite()
    suite["schedule"] = {**suite["schedule"], **schedule}
    return list(plan(load_suite(write_suite(suite))).runs)


def test_explicit_defaults_leave_the_run_ids_alone(write_suite) -> None:
    plain = [run.run_id for run in _runs(write_suite)]
    explicit = _runs(write_suite, optimizer="sgd", lr_schedule="multistep", warmup_epochs=0, betas=[0.9, 0.999])
    assert [run.run_id for run in explicit] == plain
    assert explicit[0].schedule["optimizer"] == "sgd" and explicit[0].schedule["validation"] is None


def test_recipe_keys_are_typed_into_the_run_and_change_its_id(write_suite) -> None:
    plain = {run.run_id for run in _runs(write_suite)}
    runs = _runs(
        write_suite,
        optimizer="adam",
        lr_schedule="constant",
        eps=1.0e-7,
        validation={"fraction": 0.2},
        selection={"metric": "val_weighted_f1"},
        early_stopping={"patience": 3},
    )
    schedule = runs[0].schedule
    assert schedule["optimizer"] == "adam" and schedule["eps"] == 1e-7
    assert schedule["validation"] == {"fraction": 0.2, "seed": 0}
    assert schedule["selection"] == {"metric": "val_weighted_f1", "mode": "max"}
    assert schedule["early_stopping"] == {"patience": 3}
    assert not {run.run_id for run in runs} & plain


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ({"optimizer": "adagrad"}, "schedule.optimizer: 'adagrad' is not one of sgd, adam, adamw"),
        ({"lr_schedule": "step"}, "schedule.lr_schedule: 'step' is not one of multistep, cosine, constant"),
        ({"selection": {"metric": "val_loss"}}, "schedule.selection: needs a validation split"),
        ({"validation": {"fraction": 0.2}, "selection": {"metric": "test_top1"}}, "schedule.selection.metric"),
        ({"warmup_epochs": 5}, "schedule.warmup_epochs: 5 leaves no epoch after the warm-up"),
        ({"frobnicate": 1}, "schedule.frobnicate: unknown key"),
    ],
)
def test_bad_recipe_values_are_named(write_suite, schedule: dict, expected: str) -> None:
    with pytest.raises(SuiteError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        _runs(write_suite, **schedule)
