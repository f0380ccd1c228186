"""ShuffleNetV2 as in the CRD code (RepDistiller ``models/ShuffleNetv2.py``): its ``ShuffleV2``
(net size 1: 116, 232, 464 channels; 3, 7, 3 basic blocks after each down-sampling block; 1024-channel head).

Stem conv1x1 (3 -> 24)-BN-ReLU at full resolution; three stages, each a down-sampling block then
basic blocks (split the channels, transform one half, concatenate, shuffle); head conv1x1-BN-ReLU,
global pool, linear. ``Features.preact`` is the CRD code's ``preact=True`` feature: the last block's
concatenation of the untouched half and the transformed half before its ReLU, and, as there, before
the channel shuffle.

Same layers in the same order, so parameter counts and published checkpoints match
(``kdbench.models.checkpoint`` maps the state-dict keys). Like the CRD code, it leaves every layer
at torch's default initialisation. One deliberate difference: the CRD code's ``avg_pool2d(4)``,
built for 32x32 images, is a global average pooling: identical at 32x32, and it makes 64x64 inputs
work.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.models import MODELS
from kdbench.models.base import GlobalAvgPool, Stage, StagedModel, StageInfo
from kdbench.models.keys import STAGE_BLOCK, KeyRule, stage_block
from kdbench.models.shufflenetv1 import STEM_CHANNELS, channel_shuffle, shuffle_stem


class ShuffleBasicBlock(nn.Module):
    """Keep the first half of the channels; 1x1-BN-ReLU, depthwise 3x3-BN, 1x1-BN-ReLU on the second;
    concatenate; shuffle in two groups."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.conv1 = nn.Conv2d(half, half, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(half, half, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)

    def forward_with_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept, transformed = x.split(x.shape[1] // 2, dim=1)
        transformed = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(transformed)))))
        transformed = self.bn3(self.conv3(transformed))
        out = channel_shuffle(torch.cat([kept, F.relu(transformed)], 1), 2)
        return out, torch.cat([kept, transformed], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_preact(x)[0]


class ShuffleDownBlock(nn.Module):
    """Two stride-2 branches, each ending on half the output channels, concatenated and shuffled:
    left depthwise 3x3-BN, 1x1-BN-ReLU; right 1x1-BN-ReLU, depthwise 3x3-BN, 1x1-BN-ReLU."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        half = channels // 2
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, stride=2, padding=1, groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, half, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = nn.Conv2d(in_channels, half, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(half)
        self.conv4 = nn.Conv2d(half, half, 3, stride=2, padding=1, groups=half, bias=False)
        self.bn4 = nn.BatchNorm2d(half)
        self.conv5 = nn.Conv2d(half, half, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = self.bn4(self.conv4(F.relu(self.bn3(self.conv3(x)))))
        right = F.relu(self.bn5(self.conv5(right)))
        return channel_shuffle(torch.cat([left, right], 1), 2)


class ShuffleNetV2(StagedModel):
    """Stem, three stages (down-sampling block, then basic blocks), 1x1 head conv, global pool, linear."""

    crd_key_rules: ClassVar[tuple[KeyRule, ...] | None] = (
        (r"stem\.0\.", "conv1."),
        (r"stem\.1\.", "bn1."),
        (STAGE_BLOCK, stage_block("layer{stage}.{block}.")),
        (r"head_conv\.", "conv2."),
        (r"head_bn\.", "bn2."),
        (r"classifier\.", "linear."),
    )

    def __init__(
        self, widths: tuple[int, int, int], depths: tuple[int, int, int], head_channels: int, num_classes: int
    ):
        super().__init__()
        self.stem = shuffle_stem()
        in_channels = STEM_CHANNELS
        stages = []
        for width, depth in zip(widths, depths, strict=True):
            stages.append(
                Stage(ShuffleDownBlock(in_channels, width), *(ShuffleBasicBlock(width) for _ in range(depth)))
            )
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.head_conv = nn.Conv2d(in_channels, head_channels, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(head_channels)
        self.classifier = nn.Linear(head_channels, num_classes)
        self.pool = GlobalAvgPool()
        self.embedding_dim = head_channels
        self.feature_info = [
            StageInfo(width, stride) for width, stride in zip((STEM_CHANNELS, *widths), (1, 2, 4, 8), strict=True)
        ]

    def embed(self, last_stage_output: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(F.relu(self.head_bn(self.head_conv(last_stage_output)))), 1)


@MODELS.register("ShuffleV2", aliases=("ShuffleNetV2",))
def shuffle_v2(num_classes: int) -> ShuffleNetV2:
    return ShuffleNetV2(widths=(116, 232, 464), depths=(3, 7, 3), head_channels=1024, num_classes=num_classes)
