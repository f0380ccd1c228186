"""MobileNetV2 as in the CRD code (RepDistiller ``models/mobilenetv2.py``): its ``mobile_half``
(expansion 6, width 0.5), which its ``model_dict`` registers as ``MobileNetV2``.

Stem conv3x3 (stride 2)-BN-ReLU; seven groups of inverted residual blocks, read as four stages at the
CRD code's feature points (groups 0-1, 2, 3-4, 5-6); head conv1x1-BN-ReLU to 1280 channels, pool,
linear. Blocks end on a BN with no activation (linear bottlenecks), so ``Features.preact`` is the
same tensors as ``Features.stages``, as in the CRD code, whose features ignore ``preact``. Unlike
torchvision's, every block has the expanding 1x1 conv, the first too (expansion 1).

Same layers in the same order and the same initialisation, so parameter counts and published
checkpoints match (``kdbench.models.checkpoint`` maps the state-dict keys). One deliberate
difference: the CRD code's ``AvgPool2d(input_size // 16, ceil_mode=True)``, built for 32x32
images, is a global average pooling: identical at 32x32, and it makes 64x64 inputs work.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from kdbench.models import MODELS
from kdbench.models.base import GlobalAvgPool, Stage, StagedModel, StageInfo, kaiming_init
from kdbench.models.keys import STAGE_BLOCK, KeyRule

#: (expansion, channels, blocks, stride) of the seven block groups; expansion None means "the model's"
BLOCK_GROUPS: tuple[tuple[int | None, int, int, int], ...] = (
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)
#: which block groups make up each stage (the CRD code takes features after groups 1, 2, 4, 6)
STAGE_GROUPS: tuple[tuple[int, ...], ...] = ((0, 1), (2,), (3, 4), (5, 6))
#: width of the head's 1x1 conv (the CRD code keeps 1280 for width multipliers up to 1)
HEAD_CHANNELS = 1280


def conv_bn_relu(in_channels: int, channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand-BN-ReLU, depthwise 3x3-BN-ReLU, 1x1 project-BN; identity added at stride 1, equal widths."""

    def __init__(self, in_channels: int, channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(StagedModel):
    """The CRD code's CIFAR MobileNetV2 with expansion ``expansion`` and width multiplier ``width``."""

    crd_key_rules: ClassVar[tuple[KeyRule, ...] | None] = (
        (r"stem\.", "conv1."),
        # our stage i holds the CRD code's block groups STAGE_GROUPS[i], its blocks.<group>
        (STAGE_BLOCK, lambda match: f"blocks.{STAGE_GROUPS[int(match[1])][int(match[2])]}."),
        (r"head_conv\.", "conv2."),
        (r"classifier\.", "classifier.0."),
    )

    def __init__(self, expansion: int, width: float, num_classes: int):
        super().__init__()
        in_channels = int(32 * width)
        self.stem = conv_bn_relu(3, in_channels, 3, stride=2)
        groups: list[nn.Sequential] = []
        for group_expansion, group_channels, count, group_stride in BLOCK_GROUPS:
            channels = int(group_channels * width)
            blocks = []
            for index in range(count):
                stride = group_stride if index == 0 else 1
                blocks.append(InvertedResidual(in_channels, channels, stride, group_expansion or expansion))
                in_channels = channels
            groups.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(Stage(*(groups[index] for index in members)) for members in STAGE_GROUPS)
        head_channels = int(HEAD_CHANNELS * width) if width > 1.0 else HEAD_CHANNELS
        self.head_conv = conv_bn_relu(in_channels, head_channels, 1)
        self.classifier = nn.Linear(head_channels, num_classes)
        self.pool = GlobalAvgPool()
        self.embedding_dim = head_channels

        total_stride = 2  # the stem's
        self.feature_info = [StageInfo(int(32 * width), total_stride)]
        for members in STAGE_GROUPS:
            for index in members:
                total_stride *= BLOCK_GROUPS[index][3]
            self.feature_info.append(StageInfo(int(BLOCK_GROUPS[members[-1]][1] * width), total_stride))
        kaiming_init(self, linear_std=0.01)

    def embed(self, last_stage_output: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.head_conv(last_stage_output)), 1)


@MODELS.register("MobileNetV2", aliases=("MobileNetV2", "mobile_half"))
def mobile_half(num_classes: int) -> MobileNetV2:
    return MobileNetV2(expansion=6, width=0.5, num_classes=num_classes)
