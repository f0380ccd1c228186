"""RKD: Park et al., "Relational Knowledge Distillation" (CVPR 2019).

Reference code: the CRD code (RepDistiller ``distiller_zoo/RKD.py`` ``RKDLoss``, wired in
``helper/loops.py`` with ``--distill rkd -a 0 -b 1``).

Features: the pooled embedding (the CRD code's ``feat[-1]``) of each network. Distance term: the
pairwise Euclidean distances of the batch (squared distances clamped at 1e-12 before the root,
diagonal zero), each matrix divided by the mean of its positive entries; Smooth-L1 between
student and teacher. Angle term: for every triple (i, j, k), the cosine of the angle at i between
the unit vectors e_j - e_i and e_k - e_i; Smooth-L1 between student and teacher. Teacher-side
quantities are computed without gradients. Loss = 25 * distance + 50 * angle. Defaults: weight
(beta) 1, distance_weight 25, angle_weight 50, CE weight 1.

Deliberate differences: none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.models.base import Features, StagedModel


def pairwise_distances(embedding: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distance matrix, the square clamped at ``eps`` before the root, zero diagonal."""
    squared_norms = embedding.pow(2).sum(1)
    squared = (squared_norms.unsqueeze(1) + squared_norms.unsqueeze(0) - 2 * embedding @ embedding.t()).clamp(min=eps)
    off_diagonal = 1 - torch.eye(len(embedding), dtype=embedding.dtype, device=embedding.device)
    return squared.sqrt() * off_diagonal


def normalised_distances(embedding: torch.Tensor) -> torch.Tensor:
    """Distances over their mean over the positive entries (the off-diagonal ones), as the reference.

    Written as sum / count rather than by boolean indexing: the same value, without an output whose
    shape depends on the data (which breaks a compiled or CUDA-graph step and syncs the host)."""
    distances = pairwise_distances(embedding)
    return distances / (distances.sum() / (distances > 0).sum())


def angle_cosines(embedding: torch.Tensor) -> torch.Tensor:
    """cos of the angle at i between e_j - e_i and e_k - e_i, for every (i, j, k), flattened."""
    differences = F.normalize(embedding.unsqueeze(0) - embedding.unsqueeze(1), p=2, dim=2)
    return torch.bmm(differences, differences.transpose(1, 2)).flatten()


@full_precision
def rkd_loss(
    student_embedding: torch.Tensor, teacher_embedding: torch.Tensor, distance_weight: float, angle_weight: float
) -> torch.Tensor:
    student_embedding = student_embedding.flatten(1)
    teacher_embedding = teacher_embedding.flatten(1)
    with torch.no_grad():
        teacher_distances = normalised_distances(teacher_embedding)
        teacher_angles = angle_cosines(teacher_embedding)
    distance = F.smooth_l1_loss(normalised_distances(student_embedding), teacher_distances)
    angle = F.smooth_l1_loss(angle_cosines(student_embedding), teacher_angles)
    return distance_weight * distance + angle_weight * angle


@METHODS.register("rkd", aliases=("RKD", "relational"))
class RKD(DistillLoss):
    """Relational KD (distance + angle) on the pooled embedding (see the module docstring)."""

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        *,
        weight: float = 1.0,
        distance_weight: float = 25.0,
        angle_weight: float = 50.0,
    ):
        super().__init__(teacher, student, weight=weight)
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = rkd_loss(student.embedding, teacher.embedding, self.distance_weight, self.angle_weight)
        return {"rkd": self.weight * loss}
