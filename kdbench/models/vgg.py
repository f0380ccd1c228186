"""VGGs with batch norm as in the CRD code (RepDistiller ``models/vgg.py``, its ``vgg*_bn`` networks,
which its ``model_dict`` registers as vgg8, vgg11, vgg13, vgg16 and vgg19).

Five conv blocks; each block is conv3x3(bias)-BN-ReLU repeated, ending on a BN. The stem is block 0
and its ReLU (the CRD code's f0); stage i is a 2x2 max-pool, block i and a ReLU, so ``Features.stages``
are the CRD code's f1..f4 and ``Features.preact`` its f1_pre..f4_pre (the block's last BN output).
Global average pooling and one linear layer on 512 channels, as in the CRD code.

Same layers in the same order and the same initialisation, so parameter counts and published
checkpoints match (``kdbench.models.checkpoint`` maps the state-dict keys). One deliberate
difference: the CRD code max-pools before the last block only when the image is 64 pixels high
(Tiny-ImageNet); the last stage here pools when its input is 8 pixels high, which is the same
decision for 32x32 and 64x64 images and needs no access to the image. ``feature_info`` gives the
strides of a 32x32 image; ``feature_sizes`` knows about the extra pooling.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.models import MODELS
from kdbench.models.base import Stage, StagedModel, StageInfo, kaiming_init
from kdbench.models.keys import KeyRule

#: conv widths of blocks 0..4 (the CRD code's configurations 'S', 'A', 'B', 'D', 'E')
CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}

#: height of the last stage's input at which the CRD code's 64x64 branch pools once more
_EXTRA_POOL_HEIGHT = 8


class ConvBlock(nn.Sequential):
    """(conv3x3-BN-ReLU) x n without the last ReLU, as the CRD code's ``_make_layers``; ReLU applied after."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            in_channels = width
        super().__init__(*layers[:-1])

    def forward_with_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        preact = super().forward(x)
        return F.relu(preact), preact

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_preact(x)[0]


class PoolAt64(nn.Module):
    """2x2 max-pool applied only to an 8-pixel-high map: the CRD code's ``if h == 64`` pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 2) if x.shape[-2] == _EXTRA_POOL_HEIGHT else x


class VGG(StagedModel):
    """Stem (block 0), four stages (max-pool, block, ReLU), global average pool, linear."""

    crd_key_rules: ClassVar[tuple[KeyRule, ...] | None] = (
        (r"stem\.", "block0."),
        # blocks.0 of a stage is its max-pool, blocks.1 the conv block
        (r"stages\.(\d+)\.blocks\.1\.", lambda match: f"block{int(match[1]) + 1}."),
        (r"classifier\.", "classifier."),
    )

    def __init__(self, widths: tuple[tuple[int, ...], ...], num_classes: int):
        super().__init__()
        self.stem = ConvBlock(3, widths[0])
        stages = []
        for index in range(1, 5):
            pool = PoolAt64() if index == 4 else nn.MaxPool2d(2, 2)
            stages.append(Stage(pool, ConvBlock(widths[index - 1][-1], widths[index])))
        self.stages = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(widths[4][-1], num_classes)
        self.embedding_dim = widths[4][-1]
        strides = (1, 2, 4, 8, 8)
        self.feature_info = [StageInfo(block[-1], stride) for block, stride in zip(widths, strides, strict=True)]
        kaiming_init(self, linear_std=0.01)

    def feature_sizes(self, image_size: int) -> list[int]:
        sizes = super().feature_sizes(image_size)
        if sizes[-2] == _EXTRA_POOL_HEIGHT:
            sizes[-1] //= 2
        return sizes


def _register(name: str) -> None:
    depth = name.removeprefix("vgg")

    @MODELS.register(name, aliases=(f"VGG{depth}", f"VGG-{depth}", f"{name}_bn"))
    def factory(num_classes: int) -> VGG:
        return VGG(CONFIGS[name], num_classes)

    factory.__name__ = name


for _name in CONFIGS:
    _register(_name)
