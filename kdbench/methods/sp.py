"""SP: Tung & Mori, "Similarity-Preserving Knowledge Distillation" (ICCV 2019).

Reference code: the CRD code (RepDistiller ``distiller_zoo/SP.py`` ``Similarity``, wired in
``helper/loops.py`` with ``--distill similarity -a 0 -b 3000``).

Features: the last stage output (the CRD code's ``feat[-2]``), flattened per sample. The batch Gram
matrix ``G = f f^T`` of each network, each row L2-normalised; loss = squared Frobenius distance of
the two normalised matrices divided by batch^2. Defaults: weight (beta) 3000, CE weight 1.

Deliberate differences: none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.models.base import Features, StagedModel


@full_precision
def similarity_loss(student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    batch = student_map.shape[0]
    student_flat, teacher_flat = student_map.reshape(batch, -1), teacher_map.reshape(batch, -1)
    student_gram = F.normalize(student_flat @ student_flat.t())
    teacher_gram = F.normalize(teacher_flat @ teacher_flat.t())
    return (teacher_gram - student_gram).pow(2).sum() / (batch * batch)


@METHODS.register("sp", aliases=("SP", "similarity"))
class SP(DistillLoss):
    """Similarity-preserving loss on the last stage output (see the module docstring)."""

    def __init__(self, teacher: StagedModel, student: StagedModel, *, weight: float = 3000.0):
        super().__init__(teacher, student, weight=weight)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"sp": self.weight * similarity_loss(student.stages[-1], teacher.stages[-1])}
