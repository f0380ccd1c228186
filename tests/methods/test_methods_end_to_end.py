"""Every registered method trains through ``kdbench run`` on digits, and steps on every paper pair."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
import yaml

from kdbench.cli import main
from kdbench.methods import METHODS, create_distiller
from kdbench.models import create_model
from kdbench.results.store import ResultStore
from kdbench.suite import load_suite, plan
from kdbench.train import make_optimizer, training_step
from tests.conftest import tiny_suite

SUITES = Path(__file__).resolve().parents[2] / "suites"
# Every epoch-count parameter set to 1 so two-stage methods (FSP) run both their stages quickly.
SHORT = {"init_epochs": 1}


def method_entry(name: str) -> dict:
    params = {k: v for k, v in SHORT.items() if k in METHODS.get(name).parameter_defaults()}
    return {"use": name, name: params}


@pytest.fixture(scope="module")
def digits_results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("digits-results")


@pytest.mark.parametrize("name", METHODS.names())
def test_each_method_trains_one_epoch_on_digits_through_kdbench_run(name, tmp_path, digits_results, capsys) -> None:
    document = tiny_suite(
        dataset="digits",
        schedule={"epochs": 1, "batch_size": 64, "lr": 0.05, "milestones": []},
        teachers={"resnet8": {}},
        pairs=[{"teacher": "resnet8", "student": "resnet8", "self_distillation": True}],
        methods={name: method_entry(name)},
    )
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(document))
    code = main(["run", str(suite), "--results-dir", str(digits_results), "--quiet", "--no-report"])
    out = capsys.readouterr().out
    assert code == 0, out
    runs = plan(load_suite(suite))
    result = ResultStore(digits_results).result(runs[-1].run_id)
    assert result is not None and result["epochs"] == 1
    assert 0 <= result["top1_last"] <= 100


def _crd_zoo(name: str) -> bool:
    with torch.device("meta"):
        return type(create_model(name, 10)).crd_key_rules is not None


def paper_pairs() -> list[tuple[str, str]]:
    """The pairs of the suites' CRD-zoo networks (the course project's MNIST and torchvision models,
    which take other image shapes and recipes, have their own tests)."""
    pairs: list[tuple[str, str]] = []
    for path in sorted(SUITES.glob("*.yaml")):
        if path.name == "smoke.yaml":
            continue
        for spec in plan(load_suite(path)):
            pair = (spec.pair_teacher or spec.teacher, spec.student)
            if spec.kind == "student" and pair not in pairs and all(map(_crd_zoo, pair)):
                pairs.append(pair)
    return pairs


@pytest.mark.parametrize(("teacher_name", "student_name"), paper_pairs())
def test_every_method_steps_on_every_paper_pair_at_cifar_shape(teacher_name, student_name) -> None:
    """One training step of every method on each pair of the paper's suites (FSP NA where it must be)."""
    from kdbench.models import model_feature_info

    torch.manual_seed(0)
    teacher = create_model(teacher_name, 100)
    student = create_model(student_name, 100)
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    for name in METHODS.names():
        cls = METHODS.get(name)
        params = {k: v for k, v in SHORT.items() if k in cls.parameter_defaults()}
        reason = cls.not_applicable(model_feature_info(teacher_name), model_feature_info(student_name), params)
        if reason:
            # FSP and KDSVD compare maps channel by channel: NA across widths, as in the CRD code
            unexpected = f"{name} unexpectedly not applicable to {teacher_name}->{student_name}: {reason}"
            assert name in {"fsp", "kdsvd"}, unexpected
            continue
        distiller = create_distiller(student, teacher, [(name, params)])
        optimizer = make_optimizer(
            distiller.trainable_parameters(),
            {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": False},
            torch.device("cpu"),
        )
        distiller.train()
        _, losses = training_step(distiller, optimizer, images, labels, contextlib.nullcontext)
        total = sum(losses.values())
        assert torch.isfinite(total), (name, losses)


def test_fsp_is_na_exactly_on_the_unequal_width_pair_of_table1() -> None:
    runs = plan(load_suite(SUITES / "cifar100.yaml"))
    na = {(r.pair_teacher, r.student) for r in runs if r.not_applicable}
    assert na == {("wrn_40_2", "wrn_40_1")}
    assert {r.method for r in runs if r.not_applicable} == {"FSP"}
