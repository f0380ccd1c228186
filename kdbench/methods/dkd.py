"""DKD: Zhao et al., "Decoupled Knowledge Distillation" (CVPR 2022).

Reference code: megvii-research/mdistiller (``mdistiller/distillers/DKD.py``, defaults in
``mdistiller/engine/cfg.py``, per-pair ``configs/cifar100/dkd/*.yaml``). The KD loss split into a
target-class term and a non-target-class term, weighted apart:

- TCKD: KL between the binary distributions [p_target, p_rest] of teacher and student (both from the
  softmax of logits / T over all classes; p_rest summed over the non-target classes), times T^2, summed
  and divided by the batch size.
- NCKD: KL between the softmaxes of logits / T over the non-target classes only, times T^2, summed and
  divided by the batch size.

Loss = CE + warm-up * weight * (alpha * TCKD + beta * NCKD), the warm-up min(e / 20, 1) at the 1-based
epoch e (``warmup_epochs`` 20, the reference's ``DKD.WARMUP``; see ``DistillLoss.enable_warmup``).

Features: the logits of both networks and the labels. Defaults (mdistiller ``cfg.py``): CE weight 1,
alpha 1, beta 8, temperature 4, warm-up 20 epochs, ``weight`` 1 (not in the reference: a factor on the
whole term, which logit standardisation's published ``--kd-weight 9`` multiplies alpha and beta by).
Per-pair beta of the CIFAR-100 configs: 8 for ResNet32x4 -> ResNet8x4 and the ShuffleNets, 2 for
ResNet56 -> ResNet20 and ResNet110 -> ResNet32, 6 for VGG13 -> VGG8, VGG13 -> MobileNetV2 and the
WRN-40-2 -> WRN-16-2 / WRN-40-1 pairs; their lr is 0.05 (0.01 for MobileNetV2 and ShuffleNet students).

``logit_standardize: true`` z-scores both logits first (logit standardisation, see
``kdbench.methods.logit_standardization``).

Deliberate differences: none in the formula; two numerically safer forms of the same values (equal
up to rounding). The binary distributions' logarithms are log-sum-exps of the log-softmax, not the log
of summed probabilities, and the non-target softmax masks the target logit out instead of subtracting
1000 from it: the reference's TCKD is NaN once a probability underflows to 0, and its NCKD keeps the
target class once logits / T exceed 1000 (both happen to a diverging student). The warm-up is
kdbench's general method-weight warm-up (``warmup_epochs`` works on every method); ``weight`` is a
factor the reference does not have (1 by default).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.methods.logit_standardization import maybe_standardize
from kdbench.models.base import Features, StagedModel


@full_precision
def dkd_parts(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), each times T^2 and divided by the batch size."""
    batch, classes = student_logits.shape
    target = F.one_hot(labels, classes).bool()

    def log_binary(logits: torch.Tensor) -> torch.Tensor:
        """log [p_target, p_rest] from the log-softmax (finite even where a probability underflows)."""
        log_p = F.log_softmax(logits / temperature, dim=1)
        log_target = log_p.masked_fill(~target, float("-inf")).logsumexp(dim=1)
        log_rest = log_p.masked_fill(target, float("-inf")).logsumexp(dim=1)
        return torch.stack([log_target, log_rest], dim=1)

    scale = temperature**2 / batch
    log_b_student, log_b_teacher = log_binary(student_logits), log_binary(teacher_logits)
    tckd = (log_b_teacher.exp() * (log_b_teacher - log_b_student)).sum() * scale

    # the softmax over the non-target classes: the target logit masked out (no data-dependent shapes,
    # so it compiles), its KL term set to 0
    def log_others(logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax((logits / temperature).masked_fill(target, float("-inf")), dim=1)

    log_o_student, log_o_teacher = log_others(student_logits), log_others(teacher_logits)
    nckd = (log_o_teacher.exp() * (log_o_teacher - log_o_student).masked_fill(target, 0.0)).sum() * scale
    return tckd, nckd


@METHODS.register("dkd", aliases=("DKD", "decoupled_kd"))
class DKD(DistillLoss):
    """Decoupled KD (see the module docstring)."""

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        *,
        weight: float = 1.0,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        warmup_epochs: int = 20,
        logit_standardize: bool = False,
    ):
        super().__init__(teacher, student, weight=weight)
        problems = self.parameter_problems(dict(temperature=temperature, warmup_epochs=warmup_epochs))
        if problems:
            raise ValueError("; ".join(problems))
        self.alpha, self.beta, self.temperature = alpha, beta, temperature
        self.logit_standardize = logit_standardize
        self.enable_warmup(warmup_epochs)

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        return positive_temperature("dkd", params) + nonnegative_warmup("dkd", params)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        student_logits, teacher_logits = maybe_standardize(student.logits, teacher.logits, self.logit_standardize)
        tckd, nckd = dkd_parts(student_logits, teacher_logits, labels, self.temperature)
        return {"dkd": self.weight * (self.alpha * tckd + self.beta * nckd)}


def positive_temperature(method: str, params: dict[str, Any], key: str = "temperature") -> list[str]:
    value = params.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
        return [f"{method}.{key}: {value} must be positive"]
    return []


def nonnegative_warmup(method: str, params: dict[str, Any]) -> list[str]:
    value = params.get("warmup_epochs")
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [f"{method}.warmup_epochs: {value} must be 0 (no warm-up) or a number of epochs"]
    return []
