"""TTM and WTTM: Zheng & Yang, "Knowledge Distillation Based on Transformed Teacher Matching" (ICLR 2024).

Reference code: zkxufo/TTM (``distiller_zoo/ttm.py``, ``distiller_zoo/wttm.py``; wiring in
``helper/loops.py``: loss = gamma * CE + alpha * (added loss) + beta * (main loss), ``-r`` ``-a`` ``-b``).

Features: the logits of both networks. Transformed teacher matching drops the temperature on the
student's side: the teacher's probabilities are power-transformed, p_T^gamma / sum_c p_T^gamma (the
same as softmax(z_T / T) with T = 1 / gamma), and matched by KL with the student's plain softmax:

- ``ttm``: mean over the batch of KL(p_T^gamma normalised || softmax(z_S)), no T^2 factor;
- ``wttm``: the same KL per example weighted by the teacher's own sum_c p_T^gamma (large for smooth
  teacher predictions), then the batch mean.

Loss = CE + weight * (W)TTM. Defaults: CE weight 1 (``-r 1``); ``exponent`` is the reference's
``--ttm_l`` (gamma). ``ttm``: exponent 0.1 and weight 45, the README's VGG13 -> VGG8 command
(``--distill ttm --ttm_l 0.1 -r 1 -b 45 -a 0``). ``wttm``: exponent 0.2 and weight 4, the only WTTM
setting the repository's README states (its WTTM + CRD example, ``--add wttm --ttm_l 0.2 -a 4`` with
CRD at ``-b 0.8``); the paper's per-pair T and beta (its appendix A.4) are not transcribed here.

Deliberate differences: none.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.models.base import Features, StagedModel


@full_precision
def transformed_teacher_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, exponent: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(KL per example of the power-transformed teacher from the student, the teacher's sum of p^gamma)."""
    powered = torch.softmax(teacher_logits, dim=1).pow(exponent)
    mass = powered.sum(dim=1)
    transformed = powered / mass.unsqueeze(1)
    kl = F.kl_div(F.log_softmax(student_logits, dim=1), transformed, reduction="none").sum(dim=1)
    return kl, mass


def exponent_problems(method: str, params: dict[str, Any]) -> list[str]:
    value = params.get("exponent")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
        return [f"{method}.exponent: {value} must be positive (gamma = 1 / temperature)"]
    return []


class TransformedTeacherMatching(DistillLoss):
    """KL of the power-transformed teacher from the student; subclasses choose the per-example weight."""

    loss_name = "ttm"

    def __init__(self, teacher: StagedModel, student: StagedModel, *, weight: float, exponent: float):
        super().__init__(teacher, student, weight=weight)
        problems = self.parameter_problems(dict(exponent=exponent))
        if problems:
            raise ValueError("; ".join(problems))
        self.exponent = exponent

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        return exponent_problems(cls.loss_name, params)

    def per_example_weight(self, mass: torch.Tensor) -> torch.Tensor | None:
        return None

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        kl, mass = transformed_teacher_kl(student.logits, teacher.logits, self.exponent)
        example_weight = self.per_example_weight(mass)
        loss = (kl if example_weight is None else example_weight * kl).mean()
        return {self.loss_name: self.weight * loss}


@METHODS.register("ttm", aliases=("TTM",))
class TTM(TransformedTeacherMatching):
    """Transformed teacher matching (see the module docstring)."""

    loss_name = "ttm"

    def __init__(self, teacher: StagedModel, student: StagedModel, *, weight: float = 45.0, exponent: float = 0.1):
        super().__init__(teacher, student, weight=weight, exponent=exponent)


@METHODS.register("wttm", aliases=("WTTM",))
class WTTM(TransformedTeacherMatching):
    """Weighted TTM: each example's KL times the teacher's sum of p^gamma (see the module docstring)."""

    loss_name = "wttm"

    def __init__(self, teacher: StagedModel, student: StagedModel, *, weight: float = 4.0, exponent: float = 0.2):
        super().__init__(teacher, student, weight=weight, exponent=exponent)

    def per_example_weight(self, mass: torch.Tensor) -> torch.Tensor:
        return mass
