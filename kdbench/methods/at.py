"""AT: Zagoruyko & Komodakis, "Paying More Attention to Attention" (ICLR 2017).

Reference code: the CRD code (RepDistiller ``distiller_zoo/AT.py`` ``Attention``, wired in
``helper/loops.py`` with ``--distill attention -a 0 -b 1000``).

Features: every stage output (the CRD code's ``feat[1:-1]``, post-activation), paired in order (as
its ``zip``: when the stage counts differ, the extra stages of the deeper network are unused).
Per pair: the attention map ``normalize(mean over channels of f^p)`` flattened per sample, the
larger map first average-pooled to the smaller's size, loss = mean squared difference of the two
maps; summed over stages. Defaults: weight (beta) 1000, p = 2, CE weight 1.

Deliberate differences: none (pooling targets the smaller map's height and width, which is the
CRD code's square ``(t_H, t_H)`` on square maps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.methods.connectors import match_spatial
from kdbench.models.base import Features, StagedModel


def attention_map(feature: torch.Tensor, p: float) -> torch.Tensor:
    """Spatial attention: channel mean of ``f^p``, flattened and L2-normalised per sample."""
    return F.normalize(feature.pow(p).mean(1).flatten(1))


@full_precision
def attention_loss(student_map: torch.Tensor, teacher_map: torch.Tensor, p: float) -> torch.Tensor:
    student_map, teacher_map = match_spatial(student_map, teacher_map)
    return (attention_map(student_map, p) - attention_map(teacher_map, p)).pow(2).mean()


@METHODS.register("at", aliases=("AT", "attention"))
class AT(DistillLoss):
    """Attention transfer on every stage output (see the module docstring)."""

    needs_feature_maps = True  # reads stage outputs as C x H x W maps

    def __init__(self, teacher: StagedModel, student: StagedModel, *, weight: float = 1000.0, p: float = 2.0):
        super().__init__(teacher, student, weight=weight)
        self.p = p

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = sum(attention_loss(s, t, self.p) for s, t in zip(student.stages, teacher.stages, strict=False))
        return {"at": self.weight * loss}
