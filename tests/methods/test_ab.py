"""AB against an independent float64 computation; its init stage and connectors."""

from __future__ import annotations

import math

import pytest
import torch
from method_helpers import batch, batch_norm_train, build_pair, conv1x1

from kdbench.methods import METHODS, create_distiller
from kdbench.models import model_feature_info


def boundary_reference(source: torch.Tensor, target: torch.Tensor, margin: float) -> float:
    total = 0.0
    for s, t in zip(source.flatten().tolist(), target.flatten().tolist(), strict=True):
        if t <= 0 and s > -margin:
            total += (s + margin) ** 2
        if t > 0 and s <= margin:
            total += (s - margin) ** 2
    return total


def test_ab_init_loss_is_weighted_boundary_loss_of_preactivations() -> None:
    teacher, student = build_pair("resnet8x4", "resnet8")
    teacher, student = teacher.double().eval(), student.double().train()
    images, labels = batch(dtype=torch.float64)
    with torch.no_grad():
        s, t = student.forward_features(images), teacher.forward_features(images)
    assert not all(torch.equal(a, b) for a, b in zip(s.preact, s.stages, strict=True))  # pre-ReLU maps
    ab = METHODS.get("ab")(teacher, student, margin=0.5).double().train()
    expected = 0.0
    for i, (connector, a, b) in enumerate(zip(ab.connectors, s.preact, t.preact, strict=True)):
        source = batch_norm_train(conv1x1(a, connector.conv), connector.bn)  # conv + BN, no ReLU
        expected += 2.0 ** (i - 2) * boundary_reference(source, b, 0.5) / len(images) * 3 / 1000
    assert math.isclose(ab.init_loss(s, t)["ab_init"].item(), expected, rel_tol=1e-10)
    assert ab(s, t, labels) == {}  # the code's main stage: CE only
    weighted = METHODS.get("ab")(teacher, student, weight=2.0, margin=0.5).double().train()
    weighted.load_state_dict(ab.state_dict())
    assert math.isclose(weighted(s, t, labels)["ab"].item(), 2 * expected, rel_tol=1e-10)


def test_ab_init_stage_trains_feature_layers_and_connectors() -> None:
    teacher, student = build_pair("resnet8x4", "resnet8")
    distiller = create_distiller(student, teacher, [("ab", {})])
    ab = distiller.terms["ab"]
    assert distiller.ce_weight == 1.0 and distiller.init_epochs() == 30 and ab.margin == 1.0
    expected = {id(p) for m in (student.stem, student.stages, ab.connectors) for p in m.parameters()}
    assert {id(p) for p in distiller.init_parameters()} == expected
    same = create_distiller(*build_pair("resnet8", "resnet8")[::-1], [("ab", {})]).terms["ab"]
    assert all(isinstance(c, torch.nn.Identity) for c in same.connectors)  # equal shapes: no connector


def test_ab_is_not_applicable_where_the_connector_cannot_upsample() -> None:
    ab = METHODS.get("ab")
    for teacher, student in [("resnet32x4", "ShuffleV1"), ("vgg13", "MobileNetV2"), ("wrn_40_2", "wrn_16_2")]:
        assert ab.not_applicable(model_feature_info(teacher), model_feature_info(student), {}) is None
    assert ab.parameter_problems({"init_epochs": -1})
    with pytest.raises(ValueError, match="init_epochs"):
        ab(*build_pair("resnet8", "resnet8"), init_epochs=-1)
