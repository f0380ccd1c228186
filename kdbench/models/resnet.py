"""CIFAR ResNets as in the CRD code (RepDistiller ``models/resnet.py``): resnet8 ... resnet110,
resnet8x4 and resnet32x4.

Same layers in the same order and the same initialisation, so parameter counts and published
checkpoints match. One deliberate difference: the final 8x8 average pooling is a global average
pooling (``GlobalAvgPool``), bit-identical at 32x32 and what lets the same network run on 64x64
Tiny-ImageNet.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.models import MODELS
from kdbench.models.base import GlobalAvgPool, Stage, StagedModel, StageInfo, kaiming_init
from kdbench.models.keys import STAGE_BLOCK, KeyRule, stage_block


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward_with_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        residual = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        preact = self.bn2(self.conv2(out)) + residual
        return F.relu(preact), preact

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_preact(x)[0]


class CifarResNet(StagedModel):
    """Stem conv(3x3)-BN-ReLU, three stages (strides 1, 2, 2), global pool, linear head."""

    crd_key_rules: ClassVar[tuple[KeyRule, ...] | None] = (
        (r"stem\.0\.", "conv1."),
        (r"stem\.1\.", "bn1."),
        (STAGE_BLOCK, stage_block("layer{stage}.{block}.")),
        (r"classifier\.", "fc."),
    )

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"depth {depth} is not 6n+2")
        blocks_per_stage = (depth - 2) // 6

        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        in_channels = widths[0]
        stages = []
        for width, stride in zip(widths[1:], (1, 2, 2), strict=True):
            blocks = []
            for index in range(blocks_per_stage):
                blocks.append(BasicBlock(in_channels, width, stride if index == 0 else 1))
                in_channels = width
            stages.append(Stage(*blocks))
        self.stages = nn.ModuleList(stages)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(in_channels, num_classes)
        self.embedding_dim = in_channels
        self.feature_info = [
            StageInfo(widths[0], 1),
            StageInfo(widths[1], 1),
            StageInfo(widths[2], 2),
            StageInfo(widths[3], 4),
        ]
        kaiming_init(self)


def _register(name: str, depth: int, widths: tuple[int, int, int, int], aliases: tuple[str, ...]) -> None:
    @MODELS.register(name, aliases=aliases)
    def factory(num_classes: int) -> CifarResNet:
        return CifarResNet(depth, widths, num_classes)

    factory.__name__ = name


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(f"resnet{_depth}", _depth, (16, 16, 32, 64), (f"ResNet{_depth}", f"ResNet-{_depth}"))
_register("resnet8x4", 8, (32, 64, 128, 256), ("ResNet8x4",))
_register("resnet32x4", 32, (32, 64, 128, 256), ("ResNet32x4",))
