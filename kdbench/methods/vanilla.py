"""Vanilla: the student trained alone with cross-entropy (no teacher); also how teachers train."""

from __future__ import annotations

import torch

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss
from kdbench.models.base import Features, StagedModel


@METHODS.register("vanilla", aliases=("Vanilla", "ce", "baseline"))
class Vanilla(DistillLoss):
    """No distillation term: loss = CE."""

    needs_teacher = False

    def __init__(self, teacher: StagedModel | None, student: StagedModel):
        super().__init__(teacher, student, weight=0.0)

    def forward(self, student: Features, teacher: Features | None, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}
