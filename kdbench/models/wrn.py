"""Wide ResNets as in the CRD code (RepDistiller ``models/wrn.py``): wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2.

Pre-activation blocks (BN-ReLU-conv), so a stage's output is a raw residual sum with no activation:
``Features.stages`` holds exactly the CRD code's ``is_feat`` features, and ``Features.preact`` holds
its ``preact=True`` features, those sums after the BN that follows them (the next stage's first BN,
or the final BN), before the ReLU.

Same layers in the same order and the same initialisation, so parameter counts and published
checkpoints match (``kdbench.models.checkpoint`` maps the state-dict keys). Deliberate differences:

- the final ``avg_pool2d(8)`` is a global average pooling: identical at 32x32, and it makes 64x64
  inputs work (the CRD code's ``view`` silently mixes up the batch there);
- ``forward_features`` applies each BN once and reuses its output for ``preact``; the CRD code
  applies the BN a second time, which in training mode also updates its running statistics twice;
- no dropout option (the CRD code's ``dropRate`` is 0 for every registered WRN).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.models import MODELS
from kdbench.models.base import Features, GlobalAvgPool, Stage, StagedModel, StageInfo, kaiming_init
from kdbench.models.keys import STAGE_BLOCK, KeyRule, stage_block


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3, plus the input (same width) or a 1x1 conv of the activated input."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        # The CRD code decides on the widths alone; the stride changes only where the width does.
        self.shortcut: nn.Module | None = None
        if in_channels != channels:
            self.shortcut = nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False)

    def forward_with_normed_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's output and ``bn1(x)``, the pre-activation of the block's input."""
        normed = self.bn1(x)
        activated = F.relu(normed)
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        residual = x if self.shortcut is None else self.shortcut(activated)
        return residual + out, normed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_normed_input(x)[0]


class WideResNet(StagedModel):
    """Stem conv3x3, three stages of pre-activation blocks (strides 1, 2, 2), BN-ReLU, global pool, linear."""

    crd_key_rules: ClassVar[tuple[KeyRule, ...] | None] = (
        (r"stem\.0\.", "conv1."),
        (STAGE_BLOCK + r"shortcut\.", stage_block("block{stage}.layer.{block}.convShortcut.")),
        (STAGE_BLOCK, stage_block("block{stage}.layer.{block}.")),
        (r"head_norm\.", "bn1."),
        (r"classifier\.", "fc."),
    )

    def __init__(self, depth: int, widen_factor: int, num_classes: int):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth {depth} is not 6n+4")
        blocks_per_stage = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)

        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False))
        in_channels = widths[0]
        stages = []
        for width, stride in zip(widths[1:], (1, 2, 2), strict=True):
            blocks = []
            for index in range(blocks_per_stage):
                blocks.append(WideBasicBlock(in_channels, width, stride if index == 0 else 1))
                in_channels = width
            stages.append(Stage(*blocks))
        self.stages = nn.ModuleList(stages)
        self.head_norm = nn.BatchNorm2d(in_channels)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(in_channels, num_classes)
        self.embedding_dim = in_channels
        self.feature_info = [StageInfo(width, stride) for width, stride in zip(widths, (1, 1, 2, 4), strict=True)]
        kaiming_init(self, zero_linear_bias=True)

    def _embed_normed(self, normed: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(F.relu(normed)), 1)

    def embed(self, last_stage_output: torch.Tensor) -> torch.Tensor:
        return self._embed_normed(self.head_norm(last_stage_output))

    def forward_features(self, x: torch.Tensor) -> Features:
        stem = self.stem(x)
        outputs: list[torch.Tensor] = []
        normed_inputs: list[torch.Tensor] = []
        x = stem
        for stage in self.stages:
            first, *rest = stage.blocks
            x, normed = first.forward_with_normed_input(x)
            for block in rest:
                x = block(x)
            outputs.append(x)
            normed_inputs.append(normed)
        head_normed = self.head_norm(x)
        embedding = self._embed_normed(head_normed)
        # Stage i's pre-activation is the BN at the start of stage i + 1 (the head's BN for the last).
        preacts = [*normed_inputs[1:], head_normed]
        return Features(stem, outputs, preacts, embedding, self.classifier(embedding))


def _register(depth: int, widen_factor: int) -> None:
    name = f"wrn_{depth}_{widen_factor}"

    @MODELS.register(name, aliases=(f"WRN-{depth}-{widen_factor}",))
    def factory(num_classes: int) -> WideResNet:
        return WideResNet(depth, widen_factor, num_classes)

    factory.__name__ = name


for _depth, _widen_factor in ((16, 1), (16, 2), (40, 1), (40, 2)):
    _register(_depth, _widen_factor)
