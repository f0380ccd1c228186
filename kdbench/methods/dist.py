"""DIST: Huang et al., "Knowledge Distillation from A Stronger Teacher" (NeurIPS 2022).

Reference code: hunto/DIST_KD, whose classification code is hunto/image_classification_sota
(``lib/models/losses/dist_kd.py``, ``DIST``; wiring in ``lib/models/losses/kd_loss.py``; the CIFAR-100
recipe ``configs/strategies/distill/dist_cifar.yaml``: ``kd: dist_t4``, ``ori_loss_weight: 1``,
``kd_loss_weight: 2``).

Features: the logits of both networks. With Y = softmax(z / tau) of a batch (rows: examples, columns:
classes), Pearson correlation as the cosine of the mean-centred vectors with 1e-8 added to the product
of norms:

- inter-class relation: 1 - mean over examples of Pearson(Y_S[i, :], Y_T[i, :]);
- intra-class relation: 1 - mean over classes of Pearson(Y_S[:, c], Y_T[:, c]).

Loss = CE + weight * tau^2 * (inter_weight * inter + intra_weight * intra). Defaults (the CIFAR-100
recipe): CE weight 1, weight 2, tau 4, inter_weight (the reference's beta) 1, intra_weight (gamma) 1.
The reference's ImageNet recipe uses tau 1 (``kd: dist``).

Deliberate differences: none.
"""

from __future__ import annotations

from typing import Any

import torch

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.methods.dkd import positive_temperature
from kdbench.models.base import Features, StagedModel

EPSILON = 1e-8


def pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (1e-8 in the denominator)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + EPSILON)


@full_precision
def dist_parts(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inter-class, intra-class) relation losses, each times tau^2."""
    y_student = torch.softmax(student_logits / temperature, dim=1)
    y_teacher = torch.softmax(teacher_logits / temperature, dim=1)
    inter = 1 - pearson_rows(y_student, y_teacher).mean()
    intra = 1 - pearson_rows(y_student.t(), y_teacher.t()).mean()
    return temperature**2 * inter, temperature**2 * intra


@METHODS.register("dist", aliases=("DIST",))
class DIST(DistillLoss):
    """Inter- and intra-class correlation of the softened predictions (see the module docstring)."""

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        *,
        weight: float = 2.0,
        temperature: float = 4.0,
        inter_weight: float = 1.0,
        intra_weight: float = 1.0,
    ):
        super().__init__(teacher, student, weight=weight)
        problems = self.parameter_problems(dict(temperature=temperature))
        if problems:
            raise ValueError("; ".join(problems))
        self.temperature, self.inter_weight, self.intra_weight = temperature, inter_weight, intra_weight

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        return positive_temperature("dist", params)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        inter, intra = dist_parts(student.logits, teacher.logits, self.temperature)
        return {"dist": self.weight * (self.inter_weight * inter + self.intra_weight * intra)}
