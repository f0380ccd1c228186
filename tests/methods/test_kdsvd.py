"""KDSVD against an independent float64 computation: right singular vectors from the eigenvectors of
each sample's channel Gram matrix, alignment and RBF relations by loops."""

from __future__ import annotations

import math

import pytest
import torch
from method_helpers import BATCH, batch, build_pair

from kdbench.methods import METHODS, create_distiller
from kdbench.methods.kdsvd import kdsvd_loss
from kdbench.models import model_feature_info


def top_right_vectors(feature_map: torch.Tensor, count: int) -> list[list[torch.Tensor]]:
    """Per sample: the ``count`` leading eigenvectors of X^T X (X: positions x channels), descending."""
    out = []
    for sample in feature_map:
        x = sample.reshape(sample.shape[0], -1).t()
        values, vectors = torch.linalg.eigh(x.t() @ x)
        order = values.argsort(descending=True)[:count]
        out.append([vectors[:, j] for j in order.tolist()])
    return out


def largest_entry_positive(v: torch.Tensor) -> torch.Tensor:
    return v if v[v.abs().argmax()] > 0 else -v


def kdsvd_reference(student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor]) -> float:
    per_stage = []
    for s_map, t_map in zip(student_maps, teacher_maps, strict=True):
        teacher_vectors = [largest_entry_positive(v[0]) for v in top_right_vectors(t_map, 1)]
        student_vectors = []
        for candidates, target in zip(top_right_vectors(s_map, 4), teacher_vectors, strict=True):
            cosines = [float(torch.dot(c, target)) for c in candidates]
            best = max(range(len(cosines)), key=lambda j: abs(cosines[j]))
            student_vectors.append(math.copysign(1.0, cosines[best]) * candidates[best])
        per_stage.append((student_vectors, teacher_vectors))  # the normalised first singular value is 1
    total = 0.0
    for (s_prev, t_prev), (s_cur, t_cur) in zip(per_stage[:-1], per_stage[1:], strict=True):
        for n in range(len(s_cur)):
            for i in range(len(s_cur[n])):
                for j in range(len(s_prev[n])):
                    s_rbf = math.exp(-((float(s_cur[n][i]) - float(s_prev[n][j])) ** 2) / 8)
                    t_rbf = math.exp(-((float(t_cur[n][i]) - float(t_prev[n][j])) ** 2) / 8)
                    total += (s_rbf - t_rbf) ** 2
    return total / len(student_maps[0])


def test_kdsvd_matches_an_eigenvector_reference() -> None:
    teacher, student = build_pair("resnet8", "resnet8")
    teacher, student = teacher.double().eval(), student.double().train()
    images, labels = batch(dtype=torch.float64)
    with torch.no_grad():
        s, t = student.forward_features(images), teacher.forward_features(images)
    expected = kdsvd_reference(s.stages, t.stages)
    assert expected > 0
    term = METHODS.get("kdsvd")(teacher, student)
    loss = term(s, t, labels)["kdsvd"]
    assert loss.dtype == torch.float64
    assert math.isclose(loss.item(), expected, rel_tol=1e-8)


def test_kdsvd_is_zero_for_identical_maps_and_its_gradient_is_finite() -> None:
    generator = torch.Generator().manual_seed(0)
    maps = [torch.randn(BATCH, 6, 4, 4, generator=generator) for _ in range(3)]
    assert kdsvd_loss(maps, maps).item() == 0.0
    student = [m.clone().requires_grad_() for m in maps]
    student[1].data[:, 2:] = 0  # dead channels: repeated zero singular values
    loss = kdsvd_loss(student, [m + 0.1 for m in maps])
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert all(torch.isfinite(m.grad).all() for m in student)


def test_kdsvd_needs_equal_stage_widths() -> None:
    kdsvd = METHODS.get("kdsvd")
    assert kdsvd.not_applicable(model_feature_info("resnet8x4"), model_feature_info("resnet8"), {})
    assert kdsvd.not_applicable(model_feature_info("resnet56"), model_feature_info("resnet20"), {}) is None
    teacher, student = build_pair("resnet8x4", "resnet8")
    distiller = create_distiller(*build_pair("resnet8", "resnet8")[::-1], [("kdsvd", {})])
    assert distiller.ce_weight == 1.0
    with pytest.raises(ValueError, match="equal channels"):
        create_distiller(student, teacher, [("kdsvd", {})])
