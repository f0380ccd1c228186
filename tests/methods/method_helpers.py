"""Shared by the method tests: tiny teacher/student pairs, inputs, and independent float64 versions of
the building blocks (BN in training mode, 1x1 conv, average pooling) written from their definitions."""

from __future__ import annotations

import torch

from kdbench.models import create_model
from kdbench.models.base import StagedModel

NUM_CLASSES = 10
BATCH = 4

# Same widths everywhere, and different widths at every map (stem included).
PAIRS = [("resnet8", "resnet8"), ("resnet8x4", "resnet8")]


def build_pair(teacher_name: str, student_name: str, seed: int = 0) -> tuple[StagedModel, StagedModel]:
    torch.manual_seed(seed)
    teacher = create_model(teacher_name, NUM_CLASSES)
    student = create_model(student_name, NUM_CLASSES)
    return teacher, student


def batch(size: int = 8, seed: int = 1, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(BATCH, 3, size, size, generator=generator, dtype=dtype)
    labels = torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator)
    return images, labels


def batch_norm_train(x: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    """BN with the batch's own statistics (biased variance), as in training mode."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    variance = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    scale = bn.weight.view(1, -1, 1, 1) / torch.sqrt(variance + bn.eps)
    return (x - mean) * scale + bn.bias.view(1, -1, 1, 1)


def conv1x1(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    out = torch.einsum("oi,bihw->bohw", conv.weight[:, :, 0, 0], x)
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1)


def block_mean_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """Average pooling of a square map to ``size`` x ``size`` (the side must be a multiple of it)."""
    factor = x.shape[2] // size
    return x.reshape(x.shape[0], x.shape[1], size, factor, size, factor).mean(dim=(3, 5))
