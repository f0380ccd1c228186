"""Trainable connectors shared by the feature methods, and the spatial matching they all use.

``ConvReg`` is FitNet's regressor as the CRD code sizes it (RepDistiller ``models/util.py``);
``StageAdapter`` is the SRKD paper's adaptation layer M (1x1 conv + BN), also used by M-FitNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two maps to the other's height and width (the CRD code's rule)."""
    if a.shape[2] > b.shape[2]:
        a = F.adaptive_avg_pool2d(a, b.shape[2:])
    elif a.shape[2] < b.shape[2]:
        b = F.adaptive_avg_pool2d(b, a.shape[2:])
    return a, b


def conv_reg_unsupported(student_size: int, teacher_size: int) -> str | None:
    """Why ``ConvReg`` cannot map a student map of this side to the teacher's, or None when it can."""
    if student_size >= teacher_size or 2 * student_size == teacher_size:
        return None
    return (
        f"FitNet's regressor cannot upsample the student's {student_size}x{student_size} hint map to the "
        f"teacher's {teacher_size}x{teacher_size} (only exactly 2x, as the CRD code's ConvReg)"
    )


class ConvReg(nn.Module):
    """Convolutional regressor student map -> teacher map: conv, BN, ReLU (the CRD code's ``ConvReg``).

    The convolution follows the two spatial sides as the CRD code does: stride-2 3x3 conv when the
    student map is twice the teacher's, stride-2 4x4 transposed conv when it is half, else a
    valid conv of kernel ``1 + s - t`` (1x1 when the sides are equal). Layers keep PyTorch's
    default initialisation and bias, as in the reference.
    """

    def __init__(
        self, student_channels: int, student_size: int, teacher_channels: int, teacher_size: int, use_relu: bool = True
    ):
        super().__init__()
        reason = conv_reg_unsupported(student_size, teacher_size)
        if reason is not None:
            raise ValueError(reason)
        self.conv: nn.Module
        if student_size == 2 * teacher_size:
            self.conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=3, stride=2, padding=1)
        elif 2 * student_size == teacher_size:
            self.conv = nn.ConvTranspose2d(student_channels, teacher_channels, kernel_size=4, stride=2, padding=1)
        else:
            kernel = 1 + student_size - teacher_size
            self.conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=kernel)
        self.bn = nn.BatchNorm2d(teacher_channels)
        self.use_relu = use_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.use_relu else x


class StageAdapter(nn.Sequential):
    """1x1 conv (no bias: BN follows) + BN, from the student's channels to the teacher's."""

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__(
            nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False), nn.BatchNorm2d(teacher_channels)
        )
