"""KDSVD: Lee et al., "Self-supervised Knowledge Distillation Using Singular Value Decomposition"
(ECCV 2018).

Reference code: the CRD code (RepDistiller ``distiller_zoo/KDSVD.py`` ``KDSVD``, wired in
``train_student.py`` / ``helper/loops.py`` as ``--distill kdsvd``, on ``feat[1:-1]``).

Features: every stage output. Each map (B, C, H, W) is read as B matrices of H*W rows and C
columns; their right singular vectors (unit columns over the channels) and singular values are
taken, non-finite values set to 0. The teacher keeps its first singular vector, the student its
first four; each sample's student vector with the largest absolute cosine to the teacher's is
taken with that cosine's sign (``align_rsv``), and both are scaled by the teacher's first
singular value normalised over the kept values (1 unless it is 0). For consecutive stages (i-1, i),
the RBF ``exp(-(v_i[c] - v_{i-1}[c'])^2 / 8)`` over every channel pair (c, c') is compared
between student and teacher: sum of squared differences (non-finite entries set to 0), over the
batch size, summed over stage pairs. It needs equal channels in teacher and student at every stage
(the cosine is a dot product over channels): otherwise the pair is NA.

Defaults: weight 1, CE weight 1. The CRD code publishes no command for KDSVD (its README and
``scripts/run_cifar_distill.sh`` stop at 12 methods, and ``-b`` has no default), so the weight is
the neutral 1: set it in the suite.

Numerics: the SVD runs in float64 (a right singular vector's gradient divides by differences of
squared singular values, which float32 cancels away when two are close) and the loss is returned
in the features' precision. Gradients that still come out non-finite (exactly repeated singular
values, e.g. dead channels) are set to 0 before they reach the student, as the code sets
non-finite forward values to 0; with distinct singular values this changes nothing.

Deliberate differences: float64 SVD and the gradient guard above; and the sign of each teacher
singular vector is fixed (its largest-magnitude channel positive) where the code keeps whatever
sign the solver returns: the loss compares signed vectors of consecutive stages, so the code's
value depends on the SVD library (LAPACK and cuSOLVER may disagree); the fixed sign makes it
one well-defined number. The student's sign never mattered (alignment takes the cosine's sign).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.models.base import Features, StagedModel, StageInfo


class _FiniteGradient(torch.autograd.Function):
    """Identity forward; the backward sets non-finite gradient entries to 0."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def right_singular_vectors(feature_map: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(v, s): the first ``count`` right singular vectors (B, C, count) and values (B, count), each
    normalised as the CRD code does (v over channels, s over the kept values), in float64."""
    b, c, h, w = feature_map.shape
    rows = _FiniteGradient.apply(feature_map).double().reshape(b, c, h * w).transpose(1, 2)
    _, values, vh = torch.linalg.svd(rows, full_matrices=False)
    vectors = _finite(vh.transpose(1, 2))[:, :, :count]
    return F.normalize(vectors, dim=1), F.normalize(_finite(values)[:, :count], dim=1)


def fix_sign(vectors: torch.Tensor) -> torch.Tensor:
    """Each column's largest-magnitude entry made positive (a solver-independent sign)."""
    largest = vectors.abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(vectors.gather(1, largest))
    return vectors * torch.where(sign == 0, torch.ones_like(sign), sign)


def align(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The student vector with the largest |cosine| to the teacher's, times the cosine's sign (per sample)."""
    cosine = student.transpose(1, 2) @ teacher  # (B, k_s, k_t)
    best = cosine.abs().amax(dim=1, keepdim=True)
    mask = torch.where(cosine.abs() == best, torch.sign(cosine), torch.zeros_like(cosine))
    return student @ mask


def _rbf(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    return torch.exp(-(current.unsqueeze(2) - previous.unsqueeze(1)).pow(2) / 8)


@full_precision
def kdsvd_loss(
    student_maps: Sequence[torch.Tensor], teacher_maps: Sequence[torch.Tensor], teacher_vectors: int = 1
) -> torch.Tensor:
    """The CRD code's KDSVD loss over a list of stage outputs (teacher maps are detached targets)."""
    loss = student_maps[0].new_zeros(()).double()
    previous: tuple[torch.Tensor, torch.Tensor] | None = None
    for student_map, teacher_map in zip(student_maps, teacher_maps, strict=True):
        v_t, s_t = right_singular_vectors(teacher_map.detach(), teacher_vectors)
        v_s, _ = right_singular_vectors(student_map, teacher_vectors + 3)
        v_t = fix_sign(v_t)
        v_s = align(v_s, v_t)
        scale = s_t.unsqueeze(1)
        v_t, v_s = v_t * scale, v_s * scale
        if previous is not None:
            student_rbf = _rbf(v_s, previous[0])
            teacher_rbf = _rbf(v_t, previous[1]).detach()
            loss = loss + _finite((student_rbf - teacher_rbf).pow(2)).sum()
        previous = (v_s, v_t)
    return (loss / student_maps[0].shape[0]).to(student_maps[0].dtype)


@METHODS.register("kdsvd", aliases=("KDSVD", "svd"))
class KDSVD(DistillLoss):
    """Singular-vector RBF relations between consecutive stages (see the module docstring)."""

    needs_feature_maps = True  # reads stage outputs as C x H x W maps

    def __init__(self, teacher: StagedModel, student: StagedModel, *, weight: float = 1.0):
        super().__init__(teacher, student, weight=weight)
        reason = self.not_applicable(self.teacher.feature_info, student.feature_info, {})
        if reason is not None:
            raise ValueError(reason)

    @classmethod
    def pair_not_applicable(
        cls, teacher: Sequence[StageInfo], student: Sequence[StageInfo], params: dict[str, Any]
    ) -> str | None:
        teacher_channels = [info.channels for info in teacher[1:]]
        student_channels = [info.channels for info in student[1:]]
        if teacher_channels != student_channels:
            return f"KDSVD needs equal channels at every stage: teacher {teacher_channels}, student {student_channels}"
        return None

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"kdsvd": self.weight * kdsvd_loss(student.stages, teacher.stages)}
