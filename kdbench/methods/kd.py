"""KD: Hinton et al., "Distilling the Knowledge in a Neural Network" (2015).

Reference code: the CRD code (RepDistiller ``distiller_zoo/KD.py``, ``DistillKL``) with its
published weights: loss = 0.1 * CE + 0.9 * KD, temperature 4. The KL divergence of the teacher's
softened distribution from the student's, summed over classes, averaged over the batch
(``reduction='batchmean'``; a plain mean would divide by the class count too), times T^2 so the
gradient scale does not shrink with the temperature.

Features: the logits of both networks. Defaults: weight (alpha) 0.9, temperature 4, CE weight
(gamma) 0.1. ``logit_standardize: true`` z-scores both logits per example before the temperature
(logit standardisation, Sun et al. CVPR 2024; see ``kdbench.methods.logit_standardization``): its
published row is ``{logit_standardize: true, temperature: 2, weight: 9}`` (base temperature 2, KD
weight 9 against CE 0.1; plain KD's 0.9 is the CRD recipe's weight). Deliberate differences: none.

``reduction: mean`` averages the KL divergence over batch *and* classes, as ``nn.KLDivLoss()`` with
torch's default reduction does (the TAKD code's loss, Mirzadeh et al. 2020): the KD term is then
1 / num_classes of Hinton's. For comparison with that code only; the default ``batchmean`` is KD.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.methods.logit_standardization import maybe_standardize
from kdbench.models.base import Features, StagedModel

#: how the KL divergence is averaged: over the batch (KD), or over batch and classes (torch's default)
KL_REDUCTIONS = ("batchmean", "mean")


@full_precision
def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, reduction: str = "batchmean"
) -> torch.Tensor:
    """tau^2 * KL(softmax(z_T / tau) || softmax(z_S / tau)), batch mean (``mean``: also over classes)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=1)
    if reduction == "mean":  # spelled out: torch warns that its own 'mean' will come to mean 'batchmean'
        return F.kl_div(log_p_student, p_teacher, reduction="sum") / student_logits.numel() * temperature**2
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature**2


@METHODS.register("kd", aliases=("KD", "hinton"))
class KD(DistillLoss):
    """Logit distillation. Deliberate differences from the reference: none."""

    default_ce_weight = 0.1

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        *,
        weight: float = 0.9,
        temperature: float = 4.0,
        logit_standardize: bool = False,
        reduction: str = "batchmean",
    ):
        super().__init__(teacher, student, weight=weight)
        problems = self.parameter_problems({"reduction": reduction})
        if problems:
            raise ValueError("; ".join(problems))
        self.temperature = temperature
        self.logit_standardize = logit_standardize
        self.reduction = reduction

    @classmethod
    def parameter_problems(cls, params: dict) -> list[str]:
        reduction = params.get("reduction", "batchmean")
        if reduction not in KL_REDUCTIONS:
            return [f"kd.reduction: {reduction!r} is not one of {', '.join(KL_REDUCTIONS)}"]
        return []

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        student_logits, teacher_logits = maybe_standardize(student.logits, teacher.logits, self.logit_standardize)
        return {"kd": self.weight * kd_loss(student_logits, teacher_logits, self.temperature, self.reduction)}
