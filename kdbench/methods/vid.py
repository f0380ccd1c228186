"""VID: Ahn et al., "Variational Information Distillation for Knowledge Transfer" (CVPR 2019).

Reference code: the CRD code (RepDistiller ``distiller_zoo/VID.py`` ``VIDLoss``, from the authors'
code; wired in ``train_student.py`` / ``helper/loops.py`` with ``--distill vid -a 0 -b 1``, one
``VIDLoss(s, t, t)`` per map of ``feat[1:-1]``).

Features: every stage output. Per stage, the larger of the two maps is average-pooled to the
other's side; a trainable regressor (1x1 conv student -> teacher channels, ReLU, 1x1 conv, ReLU,
1x1 conv, no biases; its middle width is the teacher's channels) predicts the mean of a Gaussian
over the teacher's map, with a trainable per-channel variance ``softplus(log_scale) + eps``
(``log_scale`` initialised so the variance starts at ``init_pred_var`` = 5). Loss per stage: the
mean over batch, channels and positions of ``0.5 * ((mean - target)^2 / var + log var)``; summed
over stages. Regressors and variances train with the student. Defaults: weight (beta) 1,
init_pred_var 5, eps 1e-5, CE weight 1.

Deliberate differences: the variance is ``F.softplus`` rather than the code's
``log(1 + exp(x))``: the same function, computed without overflowing for large ``x``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.methods.connectors import match_spatial
from kdbench.models.base import Features, StagedModel


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)


@full_precision
def gaussian_nll(mean: torch.Tensor, target: torch.Tensor, log_scale: torch.Tensor, eps: float) -> torch.Tensor:
    """Mean negative log-likelihood (without the constant) of ``target`` under N(mean, per-channel var)."""
    variance = (F.softplus(log_scale) + eps).view(1, -1, 1, 1)
    return (0.5 * ((mean - target) ** 2 / variance + torch.log(variance))).mean()


class VIDRegressor(nn.Module):
    """One stage: the mean regressor and the per-channel variance parameter."""

    def __init__(self, student_channels: int, teacher_channels: int, init_pred_var: float, eps: float):
        super().__init__()
        self.regressor = nn.Sequential(
            _conv1x1(student_channels, teacher_channels),
            nn.ReLU(),
            _conv1x1(teacher_channels, teacher_channels),
            nn.ReLU(),
            _conv1x1(teacher_channels, teacher_channels),
        )
        # softplus^-1(init_pred_var - eps), so that the variance starts at init_pred_var
        self.log_scale = nn.Parameter(math.log(math.exp(init_pred_var - eps) - 1.0) * torch.ones(teacher_channels))
        self.eps = eps

    def forward(self, student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
        student_map, teacher_map = match_spatial(student_map, teacher_map)
        return gaussian_nll(self.regressor(student_map), teacher_map, self.log_scale, self.eps)


@METHODS.register("vid", aliases=("VID",))
class VID(DistillLoss):
    """Variational information distillation on every stage output (see the module docstring)."""

    needs_feature_maps = True  # reads stage outputs as C x H x W maps

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        *,
        weight: float = 1.0,
        init_pred_var: float = 5.0,
        eps: float = 1e-5,
    ):
        super().__init__(teacher, student, weight=weight)
        self.stages = nn.ModuleList(
            VIDRegressor(s.channels, t.channels, init_pred_var, eps)
            for s, t in zip(student.stage_info, self.teacher.stage_info, strict=False)
        )

    @classmethod
    def parameter_problems(cls, params: dict) -> list[str]:
        init_pred_var, eps = params.get("init_pred_var"), params.get("eps")
        if isinstance(init_pred_var, (int, float)) and isinstance(eps, (int, float)) and init_pred_var <= eps:
            return [f"vid.init_pred_var: {init_pred_var} must exceed vid.eps ({eps}): the variance starts there"]
        return []

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        pairs = zip(self.stages, student.stages, teacher.stages, strict=False)
        return {"vid": self.weight * sum(stage(s, t) for stage, s, t in pairs)}
