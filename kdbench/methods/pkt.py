"""PKT: Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge Transfer" (ECCV 2018).

Reference code: the CRD code (RepDistiller ``distiller_zoo/PKT.py`` ``PKT.cosine_similarity_loss``,
wired in ``helper/loops.py`` with ``--distill pkt -a 0 -b 30000``).

Features: the pooled embedding (the CRD code's ``feat[-1]``) of each network. Each vector divided
by (its L2 norm + eps), NaNs set to 0; cosine-similarity matrix of the batch, mapped to [0, 1] by
(s + 1) / 2, each row divided by its sum (a conditional distribution per sample); loss = mean over
all entries of ``p_t * log((p_t + eps) / (p_s + eps))``. Defaults: weight (beta) 30000, eps 1e-7,
CE weight 1.

Deliberate difference: the loss is computed in float64 and cast back to the features' dtype. Its
value is ~1e-6 (hence beta 30000), and in float32 ``p + 1e-7`` already rounds away part of the
signal; the formula is unchanged.
"""

from __future__ import annotations

import torch

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.models.base import Features, StagedModel


def similarity_distribution(embedding: torch.Tensor, eps: float) -> torch.Tensor:
    """Rows of the cosine-similarity matrix, mapped to [0, 1] and normalised to sum to 1."""
    unit = embedding / (embedding.pow(2).sum(1, keepdim=True).sqrt() + eps)
    unit = torch.where(unit.isnan(), torch.zeros_like(unit), unit)
    similarity = (unit @ unit.t() + 1.0) / 2.0
    return similarity / similarity.sum(1, keepdim=True)


@full_precision
def pkt_loss(student_embedding: torch.Tensor, teacher_embedding: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    dtype = student_embedding.dtype
    student_p = similarity_distribution(student_embedding.flatten(1).double(), eps)
    teacher_p = similarity_distribution(teacher_embedding.flatten(1).double(), eps)
    return (teacher_p * torch.log((teacher_p + eps) / (student_p + eps))).mean().to(dtype)


@METHODS.register("pkt", aliases=("PKT", "probabilistic"))
class PKT(DistillLoss):
    """Probabilistic knowledge transfer on the pooled embedding (see the module docstring)."""

    def __init__(self, teacher: StagedModel, student: StagedModel, *, weight: float = 30000.0, eps: float = 1e-7):
        super().__init__(teacher, student, weight=weight)
        self.eps = eps

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pkt": self.weight * pkt_loss(student.embedding, teacher.embedding, self.eps)}
