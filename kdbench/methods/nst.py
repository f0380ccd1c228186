"""NST: Huang & Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer" (2017).

Reference code: the CRD code (RepDistiller ``distiller_zoo/NST.py`` ``NSTLoss``, wired in
``helper/loops.py`` with ``--distill nst -a 0 -b 50``).

Features: every stage output (the CRD code's ``feat[1:-1]``), paired in order as its ``zip``. Per
pair: the larger map average-pooled to the smaller's size; each channel's spatial map flattened
and L2-normalised; with the polynomial kernel ``k(a, b) = (a . b)^2`` over channel pairs, loss =
mean k(t, t) (no gradient) + mean k(s, s) - 2 mean k(s, t) (the squared MMD, the reference's
``full_loss``); summed over stages. Defaults: weight (beta) 50, CE weight 1.

Deliberate differences: none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.methods.connectors import match_spatial
from kdbench.models.base import Features, StagedModel


def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(batch, C_b, C_a) matrix of squared dot products between the channel vectors of a and b."""
    return torch.einsum("bin,bjn->bji", a, b).pow(2)


@full_precision
def nst_loss(student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    student_map, teacher_map = match_spatial(student_map, teacher_map)
    student_units = F.normalize(student_map.flatten(2), dim=2)
    teacher_units = F.normalize(teacher_map.flatten(2), dim=2)
    return (
        polynomial_kernel(teacher_units, teacher_units).mean().detach()
        + polynomial_kernel(student_units, student_units).mean()
        - 2 * polynomial_kernel(student_units, teacher_units).mean()
    )


@METHODS.register("nst", aliases=("NST", "selectivity"))
class NST(DistillLoss):
    """Neuron selectivity transfer on every stage output (see the module docstring)."""

    needs_feature_maps = True  # reads stage outputs as C x H x W maps

    def __init__(self, teacher: StagedModel, student: StagedModel, *, weight: float = 50.0):
        super().__init__(teacher, student, weight=weight)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = sum(nst_loss(s, t) for s, t in zip(student.stages, teacher.stages, strict=False))
        return {"nst": self.weight * loss}
