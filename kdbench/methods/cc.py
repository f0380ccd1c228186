"""CC: Peng et al., "Correlation Congruence for Knowledge Distillation" (ICCV 2019).

Reference code: the CRD code (RepDistiller ``distiller_zoo/CC.py`` ``Correlation``, the embeddings
``models/util.py`` ``LinearEmbed``, wired in ``train_student.py`` / ``helper/loops.py`` with
``--distill correlation -a 0 -b 0.02 --feat_dim 128``).

Features: the pooled embedding (the CRD code's ``feat[-1]``) of each network through its own
trainable linear embedding to 128 dimensions (plain ``nn.Linear``: ``LinearEmbed`` does not
L2-normalise). Both embeddings train with the student (the CRD code puts ``embed_t`` in its
trainable list too); the teacher's features themselves are detached. The CRD code's simplified
formula: ``d = |e_s - e_t|``, loss = mean over consecutive sample pairs (i, i+1) of ``<d_i, d_{i+1}>``.
Defaults: weight (beta) 0.02, embed_dim 128, CE weight 1.

Deliberate differences: none.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.models.base import Features, StagedModel


@full_precision
def correlation_loss(student_embedding: torch.Tensor, teacher_embedding: torch.Tensor) -> torch.Tensor:
    delta = (student_embedding - teacher_embedding).abs()
    return (delta[:-1] * delta[1:]).sum(1).mean()


@METHODS.register("cc", aliases=("CC", "correlation"))
class CC(DistillLoss):
    """Correlation congruence on linearly embedded pooled features (see the module docstring)."""

    def __init__(self, teacher: StagedModel, student: StagedModel, *, weight: float = 0.02, embed_dim: int = 128):
        super().__init__(teacher, student, weight=weight)
        self.embed_student = nn.Linear(student.embedding_dim, embed_dim)
        self.embed_teacher = nn.Linear(self.teacher.embedding_dim, embed_dim)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = correlation_loss(self.embed_student(student.embedding), self.embed_teacher(teacher.embedding))
        return {"cc": self.weight * loss}
