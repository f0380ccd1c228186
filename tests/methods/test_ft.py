"""FT against an independent float64 computation; its paraphraser init stage and learning rate."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from method_helpers import batch, batch_norm_train, block_mean_pool, build_pair

from kdbench.methods import METHODS, create_distiller
from kdbench.models import create_model


def leaky(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x, 0.1 * x)


def convs(x: torch.Tensor, sequence: torch.nn.Sequential, transposed: bool = False) -> torch.Tensor:
    """conv (3x3, padding 1) [-> BN in training mode] -> LeakyReLU(0.1), layer by layer."""
    layers = list(sequence)
    for conv, norm in zip(layers[0::3], layers[1::3], strict=True):
        op = F.conv_transpose2d if transposed else F.conv2d
        x = op(x, conv.weight, conv.bias, padding=1)
        x = leaky(batch_norm_train(x, norm) if isinstance(norm, torch.nn.BatchNorm2d) else x)
    return x


def factor_reference(x: torch.Tensor) -> list[list[float]]:
    rows = []
    for sample in x:
        values = [float((sample[:, h, w] ** 2).mean()) for h in range(x.shape[2]) for w in range(x.shape[3])]
        norm = math.sqrt(sum(v * v for v in values))
        rows.append([v / norm for v in values])
    return rows


def test_ft_factor_loss_and_paraphraser_reconstruction() -> None:
    teacher, student = build_pair("resnet8x4", "resnet8")
    teacher, student = teacher.double().eval(), student.double().train()
    images, labels = batch(dtype=torch.float64)
    with torch.no_grad():
        s, t = student.forward_features(images), teacher.forward_features(images)
    ft = METHODS.get("ft")(teacher, student).double().train()
    assert [m.out_channels for m in ft.paraphraser.encoder if isinstance(m, torch.nn.Conv2d)] == [256, 128, 128]
    assert [m.out_channels for m in ft.translator if isinstance(m, torch.nn.Conv2d)] == [64, 128, 128]

    with torch.no_grad():
        student_factor = convs(s.stages[-1], ft.translator)
        teacher_factor = convs(t.stages[-1], ft.paraphraser.encoder)
        reconstruction = convs(teacher_factor, ft.paraphraser.decoder, transposed=True)
    size = min(student_factor.shape[2], teacher_factor.shape[2])
    fs = factor_reference(block_mean_pool(student_factor, size))
    ft_ = factor_reference(block_mean_pool(teacher_factor, size))
    differences = [abs(a - b) for row_s, row_t in zip(fs, ft_, strict=True) for a, b in zip(row_s, row_t, strict=True)]
    expected = 200 * sum(differences) / len(differences)
    assert math.isclose(ft(s, t, labels)["ft"].item(), expected, rel_tol=1e-10)

    expected_init = float(((reconstruction - t.stages[-1]) ** 2).mean())
    assert math.isclose(ft.init_loss(s, t)["ft_init"].item(), expected_init, rel_tol=1e-10)


def test_ft_init_stage_trains_the_paraphraser_only_and_the_main_stage_never_touches_it() -> None:
    teacher, student = build_pair("resnet8x4", "resnet8")
    distiller = create_distiller(student, teacher, [("ft", {})]).train()
    ft = distiller.terms["ft"]
    assert distiller.init_epochs() == 30 and distiller.ce_weight == 1.0
    assert {id(p) for p in distiller.init_parameters()} == {id(p) for p in ft.paraphraser.parameters()}
    _, losses = distiller(*batch())
    sum(losses.values()).backward()
    assert all(p.grad is None for p in ft.paraphraser.parameters())
    assert all(p.grad is not None for p in ft.translator.parameters())


def test_ft_init_learning_rate_follows_the_code() -> None:
    teacher = create_model("resnet8x4", 10)
    for student_name, expected in [("resnet8", 0.01), ("wrn_16_2", 0.01), ("vgg8", 0.05), ("ShuffleV1", 0.05)]:
        distiller = create_distiller(create_model(student_name, 10), teacher, [("ft", {})])
        assert distiller.init_learning_rate(0.05) == expected, student_name
    distiller = create_distiller(create_model("resnet8", 10), teacher, [("ft", {"init_lr": 0.2})])
    assert distiller.init_learning_rate(0.05) == 0.2
    assert create_distiller(create_model("resnet8", 10), teacher, [("kd", {})]).init_learning_rate(0.05) == 0.05
    assert METHODS.get("ft").parameter_problems({"init_lr": -1.0})
    with pytest.raises(ValueError, match="init_lr"):
        create_distiller(create_model("resnet8", 10), teacher, [("ft", {"init_lr": 0})])
