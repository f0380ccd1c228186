"""The CIFAR ResNet50 of the CRD code (RepDistiller ``models/resnetv2.py``, its ``ResNet50``).

Stem conv3x3 (3 -> 64)-BN-ReLU at full resolution (no max-pool, unlike the ImageNet ResNet50); four
stages of bottleneck blocks (3, 4, 6, 3 blocks; 256, 512, 1024, 2048 channels; strides 1, 2, 2, 2);
global average pool, linear. ``Features.preact`` is each stage's last residual sum before its ReLU.

Same layers in the same order and the same initialisation (He-normal convs, unit BN, no zero-init of
the last BN), so parameter counts and published checkpoints match (``kdbench.models.checkpoint``
maps the state-dict keys). The CRD code already pools globally; there is no deliberate difference.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.models import MODELS
from kdbench.models.base import Stage, StagedModel, StageInfo, kaiming_init
from kdbench.models.keys import STAGE_BLOCK, KeyRule, stage_block


class Bottleneck(nn.Module):
    """1x1-BN-ReLU, 3x3 (stride)-BN-ReLU, 1x1 (x4 channels)-BN, plus the input or its 1x1-conv-BN projection."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward_with_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        preact = self.bn3(self.conv3(out)) + (x if self.shortcut is None else self.shortcut(x))
        return F.relu(preact), preact

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_preact(x)[0]


class BottleneckResNet(StagedModel):
    """Stem conv3x3-BN-ReLU, four bottleneck stages (strides 1, 2, 2, 2), global pool, linear."""

    crd_key_rules: ClassVar[tuple[KeyRule, ...] | None] = (
        (r"stem\.0\.", "conv1."),
        (r"stem\.1\.", "bn1."),
        (STAGE_BLOCK, stage_block("layer{stage}.{block}.")),
        (r"classifier\.", "linear."),
    )

    def __init__(self, depths: tuple[int, int, int, int], num_classes: int):
        super().__init__()
        stem_channels = 64
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_channels, 3, padding=1, bias=False), nn.BatchNorm2d(stem_channels), nn.ReLU(inplace=True)
        )
        in_channels = stem_channels
        stages = []
        self.feature_info = [StageInfo(stem_channels, 1)]
        total_stride = 1
        for index, (depth, channels) in enumerate(zip(depths, (64, 128, 256, 512), strict=True)):
            stride = 1 if index == 0 else 2
            blocks = []
            for block_index in range(depth):
                blocks.append(Bottleneck(in_channels, channels, stride if block_index == 0 else 1))
                in_channels = channels * Bottleneck.expansion
            stages.append(Stage(*blocks))
            total_stride *= stride
            self.feature_info.append(StageInfo(in_channels, total_stride))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_channels, num_classes)
        self.embedding_dim = in_channels
        kaiming_init(self)


@MODELS.register("ResNet50", aliases=("ResNet50", "ResNet-50"))
def resnet50(num_classes: int) -> BottleneckResNet:
    return BottleneckResNet((3, 4, 6, 3), num_classes)
