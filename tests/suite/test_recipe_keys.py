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


def test_model_options_reach_the_runs_that_use_the_model(write_suite) -> None:
    suite = tiny_suite(
        teachers={"tv_mobilenet_v2": {}},
        pairs=[["tv_mobilenet_v2", "resnet8"]],
        models={"TV-MobileNetV2": {"weights": "imagenet", "trainable": ["classifier"]}},
    )
    runs = list(plan(load_suite(write_suite(suite))).runs)
    by_kind = {(run.kind, run.method): run for run in runs}
    assert by_kind["teacher", "Teacher"].models == {
        "tv_mobilenet_v2": {"weights": "imagenet", "trainable": ["classifier"]}
    }
    assert by_kind["student", "KD"].models == {"tv_mobilenet_v2": {"weights": "imagenet", "trainable": ["classifier"]}}
    assert by_kind["student", "Vanilla"].models == {}  # Vanilla uses no teacher: its id stays the plain one
    plain = {run.run_id for run in plan(load_suite(write_suite(tiny_suite(), "plain.yaml"))).runs}
    assert by_kind["student", "Vanilla"].run_id in plain


def test_unknown_model_options_are_named(write_suite) -> None:
    suite = tiny_suite(models={"tv_resnet50": {"weight": "imagenet"}, "resnet8": {"width": 2}})
    with pytest.raises(SuiteError) as raised:
        load_suite(write_suite(suite))
    message = str(raised.value)
    assert "models.tv_resnet50.weight: unknown key 'weight'. Did you mean 'weights'?" in message
    assert "models.resnet8: resnet8 takes no options" in message
