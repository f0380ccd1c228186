"""ReviewKD: Chen et al., "Distilling Knowledge via Knowledge Review" (CVPR 2021).

Reference code: megvii-research/mdistiller (``mdistiller/distillers/ReviewKD.py``: ``ABF``,
``hcl_loss``; defaults in ``mdistiller/engine/cfg.py``; ``configs/cifar100/reviewkd.yaml``), checked
against the authors' dvlab-research/ReviewKD (``CIFAR-100/model/reviewkd.py``, ``build_review_kd``,
and the per-pair weights of ``CIFAR-100/script/reviewKD.sh``).

Features: the student's stage outputs (post-activation, the reference's ``feats`` without the stem)
and its pooled embedding as a 1x1 map; the teacher's stage outputs before their last activation
(``preact``) and its pooled embedding. Level i of the student is compared with level i of the teacher,
so the two must have the same number of stages (every CRD pair has; other pairs are NA).

Review: the student's levels are fused from the deepest (the embedding) to the shallowest by
attention-based fusion (ABF) modules: each applies a 1x1 conv + BN to its level (to ``mid`` channels,
mid = min(512, the student's embedding width)), and, below the deepest, upsamples the fused map of the
level below (nearest) to this level's size, concatenates both, predicts two sigmoid attention maps by
a 1x1 conv (with bias) and takes the attention-weighted sum; the fused map is resized (nearest) to the
teacher's size at this level and passed on, and a 3x3 conv + BN maps it to the teacher's channels. The
convs of each ABF start from ``kaiming_uniform_(a=1)``, the attention conv from torch's default.

Loss (hierarchical context loss): per level, MSE of the full maps plus the MSE of their adaptive
average pools to 4x4, 2x2 and 1x1 (each only where smaller than the map), weighted 1, 1/2, 1/4, 1/8
and divided by the sum of the weights used; summed over levels. Loss = CE + warm-up * weight * HCL
with the warm-up min(e / 20, 1) at the 1-based epoch e (the reference's ``WARMUP_EPOCHS``).

Defaults: CE weight 1, weight 1 (mdistiller's ``REVIEWKD_WEIGHT`` default), warm-up 20 epochs. The
published per-pair weights (``reviewKD.sh``; mdistiller's config agrees for ResNet32x4 -> ResNet8x4):
5 for WRN-40-2 -> WRN-16-2 / WRN-40-1 / ShuffleV1 and for ResNet32x4 -> ResNet8x4 / ShuffleV1, 8 for
ResNet32x4 -> ShuffleV2, 0.6 for ResNet56 -> ResNet20, 1 for ResNet110 -> ResNet32.

Deliberate differences: the channels come from ``feature_info`` and the embedding widths, and the
spatial sizes (the reference's hand-written ``shapes`` / ``out_shapes``) are read from the maps at run
time, so every pair with equal stage counts works at any input size; the values are the reference's
per-model lists for the CIFAR networks at 32x32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.methods.dkd import nonnegative_warmup
from kdbench.models.base import Features, StagedModel, StageInfo

#: the reference's cap on the fused width
MAX_MID_CHANNELS = 512


class AttentionFusion(nn.Module):
    """ABF: 1x1 conv + BN of one student level, fused with the level below by two attention maps."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels))
        self.output = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.attention = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.reduce[0].weight, a=1)
        nn.init.kaiming_uniform_(self.output[0].weight, a=1)

    def forward(self, x: torch.Tensor, below: torch.Tensor | None, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the map to compare with the teacher, the fused map passed to the next shallower level)."""
        x = self.reduce(x)
        if self.attention is not None and below is not None:
            below = F.interpolate(below, size=x.shape[-2:], mode="nearest")
            weights = self.attention(torch.cat([x, below], dim=1))
            x = x * weights[:, 0:1] + below * weights[:, 1:2]
        if x.shape[-1] != out_size:
            x = F.interpolate(x, size=(out_size, out_size), mode="nearest")
        return self.output(x), x


@full_precision
def hierarchical_context_loss(students: Sequence[torch.Tensor], teachers: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over levels of the MSE at full size and at 4x4, 2x2, 1x1 pools, weights halving, normalised."""
    total = torch.zeros((), device=students[0].device)
    for s, t in zip(students, teachers, strict=True):
        loss = F.mse_loss(s, t)
        weight, weights = 1.0, 1.0
        for size in (4, 2, 1):
            if size >= s.shape[2]:
                continue
            weight /= 2.0
            loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size))
            weights += weight
        total = total + loss / weights
    return total


def _level_problem(teacher: Sequence[StageInfo], student: Sequence[StageInfo]) -> str | None:
    if len(teacher) != len(student):
        return f"reviewkd pairs stage i with stage i: teacher has {len(teacher) - 1} stages, student {len(student) - 1}"
    return None


@METHODS.register("reviewkd", aliases=("ReviewKD", "review_kd", "review"))
class ReviewKD(DistillLoss):
    """Knowledge review through attention-based fusion (see the module docstring)."""

    needs_feature_maps = True  # reads stage outputs as C x H x W maps

    def __init__(self, teacher: StagedModel, student: StagedModel, *, weight: float = 1.0, warmup_epochs: int = 20):
        super().__init__(teacher, student, weight=weight)
        problems = nonnegative_warmup("reviewkd", dict(warmup_epochs=warmup_epochs))
        level_problem = _level_problem(self.teacher.feature_info, student.feature_info)
        if level_problem:
            problems.append(level_problem)
        if problems:
            raise ValueError("; ".join(problems))
        student_widths = [info.channels for info in student.stage_info] + [student.embedding_dim]
        teacher_widths = [info.channels for info in self.teacher.stage_info] + [self.teacher.embedding_dim]
        mid = min(MAX_MID_CHANNELS, student_widths[-1])
        deepest = len(student_widths) - 1
        # ordered shallow to deep, like the levels; the deepest (the embedding) fuses nothing
        self.fusions = nn.ModuleList(
            AttentionFusion(s, mid, t, fuse=i < deepest)
            for i, (s, t) in enumerate(zip(student_widths, teacher_widths, strict=True))
        )
        self.enable_warmup(warmup_epochs)

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        return nonnegative_warmup("reviewkd", params)

    @classmethod
    def pair_not_applicable(
        cls, teacher: Sequence[StageInfo], student: Sequence[StageInfo], params: dict[str, Any]
    ) -> str | None:
        return _level_problem(teacher, student)

    def reviewed(self, student: Features, teacher_sizes: Sequence[int]) -> list[torch.Tensor]:
        """The student's levels after review, shallow to deep, at the teacher's sizes and widths."""
        levels = [*student.stages, student.embedding[:, :, None, None]]
        outputs: list[torch.Tensor] = [torch.empty(0)] * len(levels)
        below = None
        for i in reversed(range(len(levels))):
            outputs[i], below = self.fusions[i](levels[i], below, teacher_sizes[i])
        return outputs

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        targets = [*teacher.preact, teacher.embedding[:, :, None, None]]
        outputs = self.reviewed(student, [t.shape[-1] for t in targets])
        return {"reviewkd": self.weight * hierarchical_context_loss(outputs, targets)}
