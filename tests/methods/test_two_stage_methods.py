"""The init stage of FSP and of the two-stage FitNet option; FSP's NA; FitNet's hint layer."""

from __future__ import annotations

import pytest
import torch
from method_helpers import batch, build_pair

from kdbench.methods import METHODS, create_distiller
from kdbench.methods.fitnet import FitNet
from kdbench.methods.fsp import FSP
from kdbench.models import model_feature_info


def parameter_ids(*modules: torch.nn.Module) -> set[int]:
    return {id(p) for module in modules for p in module.parameters()}


def test_fsp_init_stage_trains_the_students_feature_layers_only() -> None:
    teacher, student = build_pair("resnet8", "resnet8")
    distiller = create_distiller(student, teacher, [("fsp", {})])
    assert distiller.ce_weight == 1.0 and distiller.init_epochs() == 30
    assert {id(p) for p in distiller.init_parameters()} == parameter_ids(student.stem, student.stages)
    images, labels = batch()
    distiller.train()
    init_losses = distiller.init_forward(images)
    assert set(init_losses) == {"fsp_init"}
    _, main_losses = distiller(images, labels)
    assert set(main_losses) == {"ce"}  # the CRD code's main stage: CE only (its beta multiplies 0)


def test_fsp_is_not_applicable_across_widths() -> None:
    for teacher, student in [("wrn_40_2", "wrn_40_1"), ("resnet32x4", "resnet8x4"), ("resnet8x4", "resnet8")]:
        reason = FSP.not_applicable(model_feature_info(teacher), model_feature_info(student), {})
        if teacher == "resnet32x4":
            assert reason is None
        else:
            assert reason and "channels" in reason
    assert FSP.not_applicable(model_feature_info("wrn_40_2"), model_feature_info("wrn_16_2"), {}) is None
    teacher, student = build_pair("wrn_40_2", "wrn_40_1")
    with pytest.raises(ValueError, match="FSP needs equal channels"):
        create_distiller(student, teacher, [("FSP", {})])


def test_two_stage_fitnet_trains_up_to_the_hint_then_continues() -> None:
    teacher, student = build_pair("resnet8x4", "resnet8")
    distiller = create_distiller(student, teacher, [("kd", {}), ("fitnet", {"init_epochs": 2, "weight": 0.0})])
    fitnet = distiller.terms["fitnet"]
    assert distiller.init_epochs() == 2
    expected = parameter_ids(student.stem, student.stages[0], student.stages[1], fitnet.regressor)
    assert {id(p) for p in distiller.init_parameters()} == expected

    # as the CRD code's init stage: the init modules in train mode, the rest of the student in eval mode
    distiller.train()
    later_stage_stats = student.stages[2].blocks[0].bn1.running_mean.clone()
    early_stage_stats = student.stages[0].blocks[0].bn1.running_mean.clone()
    losses = distiller.init_forward(batch()[0])
    assert set(losses) == {"fitnet_init"}
    assert torch.equal(student.stages[2].blocks[0].bn1.running_mean, later_stage_stats)
    assert not torch.equal(student.stages[0].blocks[0].bn1.running_mean, early_stage_stats)
    assert student.training and fitnet.training  # modes restored for the main stage

    one_stage = create_distiller(student, teacher, [("fitnet", {})])
    assert one_stage.init_epochs() == 0


def test_fitnet_hint_layer_follows_the_crd_feature_list() -> None:
    resnet = model_feature_info("resnet8")
    assert FitNet.not_applicable(resnet, resnet, {}) is None
    assert FitNet.not_applicable(resnet, resnet, {"hint_layer": 0}) is None  # the stem
    assert "hint_layer 4" in FitNet.not_applicable(resnet, resnet, {"hint_layer": 4})
    assert FitNet.parameter_problems({"hint_layer": -1, "init_epochs": -2})
    teacher, student = build_pair("resnet8", "resnet8")
    with pytest.raises(ValueError, match="init_epochs"):
        FitNet(teacher, student, init_epochs=-1)


@pytest.mark.parametrize("name", METHODS.names())
def test_parameter_problems_accept_the_defaults(name: str) -> None:
    cls = METHODS.get(name)
    assert cls.parameter_problems(cls.parameter_defaults()) == []
