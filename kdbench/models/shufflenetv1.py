"""ShuffleNetV1 as in the CRD code (RepDistiller ``models/ShuffleNetv1.py``): its ``ShuffleV1``
(groups 3; 240, 480, 960 channels; 4, 8, 4 blocks).

Stem conv1x1 (3 -> 24)-BN-ReLU at full resolution; three stages whose first block halves the size
and concatenates an average-pooled shortcut; global pool, linear. ``Features.preact`` is each stage's
last sum (or concatenation) before its ReLU, as the CRD code's ``preact=True`` features.

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

STEM_CHANNELS = 24


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups: [N, g*c, H, W] -> [N, c*g, H, W] (the CRD code's
    view-transpose-reshape; torch's own op keeps a channels_last input channels_last, without a copy)."""
    return F.channel_shuffle(x, groups)


def shuffle_stem() -> nn.Sequential:
    """conv1x1 (3 -> 24)-BN-ReLU at full resolution, the stem of both CRD ShuffleNets."""
    return nn.Sequential(
        nn.Conv2d(3, STEM_CHANNELS, 1, bias=False), nn.BatchNorm2d(STEM_CHANNELS), nn.ReLU(inplace=True)
    )


class ShuffleBottleneck(nn.Module):
    """Grouped 1x1-BN-ReLU, shuffle, depthwise 3x3-BN-ReLU, grouped 1x1-BN; add the input, or at stride 2
    concatenate its 3x3 average pool; ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int, groups: int, input_groups: int):
        super().__init__()
        hidden = channels // 4
        self.stride = stride
        self.input_groups = input_groups
        self.conv1 = nn.Conv2d(in_channels, hidden, 1, groups=input_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, channels, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward_with_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = channel_shuffle(F.relu(self.bn1(self.conv1(x))), self.input_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = self.shortcut(x)
        preact = torch.cat([out, residual], 1) if self.stride == 2 else out + residual
        return F.relu(preact), preact

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_preact(x)[0]


class ShuffleNetV1(StagedModel):
    """Stem, three stages (each starting at stride 2), global pool, linear."""

    crd_key_rules: ClassVar[tuple[KeyRule, ...] | None] = (
        (r"stem\.0\.", "conv1."),
        (r"stem\.1\.", "bn1."),
        (STAGE_BLOCK, stage_block("layer{stage}.{block}.")),
        (r"classifier\.", "linear."),
    )

    def __init__(self, widths: tuple[int, int, int], depths: tuple[int, int, int], groups: int, num_classes: int):
        super().__init__()
        self.stem = shuffle_stem()
        in_channels = STEM_CHANNELS
        stages = []
        for width, depth in zip(widths, depths, strict=True):
            blocks = []
            for index in range(depth):
                # the first block concatenates its input, so its branch makes the rest of the width
                branch_channels = width - in_channels if index == 0 else width
                # the network's first 1x1 conv sees the 24 stem channels, too few to group
                input_groups = 1 if in_channels == STEM_CHANNELS else groups
                blocks.append(
                    ShuffleBottleneck(in_channels, branch_channels, 2 if index == 0 else 1, groups, input_groups)
                )
                in_channels = width
            stages.append(Stage(*blocks))
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(widths[-1], num_classes)
        self.pool = GlobalAvgPool()
        self.embedding_dim = widths[-1]
        self.feature_info = [
            StageInfo(width, stride) for width, stride in zip((STEM_CHANNELS, *widths), (1, 2, 4, 8), strict=True)
        ]


@MODELS.register("ShuffleV1", aliases=("ShuffleNetV1",))
def shuffle_v1(num_classes: int) -> ShuffleNetV1:
    return ShuffleNetV1(widths=(240, 480, 960), depths=(4, 8, 4), groups=3, num_classes=num_classes)
