"""How alike two attribution maps are, and whether distillation made a student look like its teacher.

Per image, on the flattened input-resolution maps (ReLU'd Grad-CAM, or saliency magnitude), in float64:

- cosine similarity <t, s> / (|t| |s|); a map that is all zero (Grad-CAM with no positive evidence for
  the class) has cosine 0 with every map, by convention (as scikit-learn's ``cosine_similarity``);
- Spearman rank correlation: Pearson's correlation of the ranks, tied values getting their average
  rank (the ReLU'd Grad-CAM has many zeros); a constant map has correlation 0 with every map;
- Ojha et al.'s (NeurIPS 2023) comparison: is the teacher's map closer (higher cosine) to the student's
  than to an independently trained student's? The rate is the share of images where it is, a tie
  counting one half, so two copies of one student score exactly 50%, the chance level a control of two
  independent (Vanilla) students should also show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _flat(maps: torch.Tensor) -> torch.Tensor:
    return maps.reshape(maps.shape[0], -1).to(torch.float64)


def cosine_similarity(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Per image (dim 0): cosine of the flattened maps; 0 where either map is all zero."""
    a, b = _flat(first), _flat(second)
    norms = a.norm(dim=1) * b.norm(dim=1)
    dot = (a * b).sum(dim=1)
    return torch.where(norms > 0, dot / norms.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(dot))


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of a 1-D tensor, tied values sharing the mean of their ranks."""
    order = torch.argsort(values, stable=True)
    _, inverse, counts = torch.unique_consecutive(values[order], return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)  # rank of each tie group's last member
    group_rank = ends - (counts.to(torch.float64) - 1) / 2
    ranks = torch.empty_like(values, dtype=torch.float64)
    ranks[order] = group_rank[inverse]
    return ranks


def pearson_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row of two N x D tensors: Pearson's correlation; 0 where a row is constant."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    norms = a.norm(dim=1) * b.norm(dim=1)
    dot = (a * b).sum(dim=1)
    return torch.where(norms > 0, dot / norms.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(dot))


def spearman_correlation(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Per image (dim 0): Spearman's rho of the flattened maps (average ranks for ties); 0 for a constant map."""
    a, b = _flat(first), _flat(second)
    ranks_a = torch.stack([average_ranks(row) for row in a])
    ranks_b = torch.stack([average_ranks(row) for row in b])
    return pearson_correlation(ranks_a, ranks_b)


def closer_rate(student_similarity: torch.Tensor, independent_similarity: torch.Tensor) -> float:
    """Share of images where the teacher is closer to the student than to the independent student; a tie counts 1/2."""
    wins = (student_similarity > independent_similarity).to(torch.float64)
    ties = (student_similarity == independent_similarity).to(torch.float64)
    return float((wins + ties / 2).mean())


def mean_and_std(values: Sequence[float] | torch.Tensor) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); the std is None for fewer than two values."""
    data = torch.as_tensor(list(values) if not isinstance(values, torch.Tensor) else values, dtype=torch.float64)
    data = data[~torch.isnan(data)]
    if data.numel() == 0:
        return None, None
    mean = float(data.mean())
    std = float(data.std(unbiased=True)) if data.numel() > 1 else None
    return mean, (None if std is not None and math.isnan(std) else std)
