"""The stage view every model exposes; feature methods and SRKD are written against it only.

A network is read as ``stem`` (image -> F_0), ``stages`` (F_i = stages[i](F_{i-1}), each boundary
where the CRD code takes its features) and a head (``pool``: F_n -> embedding, ``classifier``:
embedding -> logits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class StageInfo:
    """Channels and total stride (w.r.t. the input image) of one stage output; ``spatial``: whether it is
    a C x H x W feature map (False: a vector of ``channels`` features, as in a fully connected network)."""

    channels: int
    stride: int
    spatial: bool = True


@dataclass
class Features:
    """Everything a distillation method may look at, from one forward pass.

    ``stages`` are post-activation outputs; ``preact`` the pre-activation outputs where the
    architecture has them (else the same tensors as ``stages``).
    """

    stem: torch.Tensor
    stages: list[torch.Tensor]
    preact: list[torch.Tensor]
    embedding: torch.Tensor
    logits: torch.Tensor


class Stage(nn.Module):
    """A sequence of blocks; reports the last block's pre-activation output when it has one."""

    def __init__(self, *blocks: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward_with_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for block in self.blocks[:-1]:
            x = block(x)
        last = self.blocks[-1]
        if hasattr(last, "forward_with_preact"):
            return last.forward_with_preact(x)
        out = last(x)
        return out, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class GlobalAvgPool(nn.Module):
    """Average pooling with one window as large as the map.

    Bit-identical to the CRD code's fixed-size ``avg_pool2d(x, 8)`` (``4`` for the ShuffleNets) at
    32x32, which ``AdaptiveAvgPool2d(1)`` is not (it sums in another order), and still a global
    pooling at 64x64, where the fixed size would leave a 2x2 map.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, x.shape[-2:])


class StagedModel(nn.Module):
    """Base class of every model: subclasses set stem, stages, pool, classifier, feature_info."""

    stem: nn.Module
    stages: nn.ModuleList
    pool: nn.Module
    classifier: nn.Module
    #: channels and stride of F_0 (stem) followed by every stage output
    feature_info: list[StageInfo]
    embedding_dim: int

    def embed(self, last_stage_output: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(last_stage_output), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.classifier(self.embed(x))

    def forward_features(self, x: torch.Tensor) -> Features:
        stem = self.stem(x)
        outputs: list[torch.Tensor] = []
        preacts: list[torch.Tensor] = []
        x = stem
        for stage in self.stages:
            x, preact = stage.forward_with_preact(x)
            outputs.append(x)
            preacts.append(preact)
        embedding = self.embed(x)
        return Features(stem, outputs, preacts, embedding, self.classifier(embedding))

    def forward_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Stage ``index`` (0-based) alone: SRKD feeds the teacher's stage the student's input."""
        return self.stages[index](x)

    def feature_sizes(self, image_size: int) -> list[int]:
        """Height (= width) of F_0 and of every stage output for a square ``image_size`` input.

        ``feature_info`` strides are those of a 32x32 image; a family whose layout changes with the
        input size (VGG pools once more at 64x64, as the CRD code does) overrides this.
        """
        return [image_size // info.stride for info in self.feature_info]

    @property
    def stage_info(self) -> list[StageInfo]:
        """``feature_info`` without the stem entry: one per stage."""
        return self.feature_info[1:]


def kaiming_init(model: nn.Module, linear_std: float | None = None, zero_linear_bias: bool = False) -> None:
    """The CRD code's initialisation: He-normal (fan-out) convs with zero bias, unit BN.

    Linear layers keep torch's default unless ``linear_std`` (weights ~ N(0, std), zero bias; the
    CRD VGGs and MobileNetV2) or ``zero_linear_bias`` (the CRD WRNs) says otherwise.
    """
    if any(p.is_meta for p in model.parameters()):
        return  # shapes only (plans, FLOP counts): no values to set, and meta init costs a second to warm up
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(module.weight, 1)
            nn.init.constant_(module.bias, 0)
        elif isinstance(module, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(module.weight, 0, linear_std)
            if linear_std is not None or zero_linear_bias:
                nn.init.zeros_(module.bias)
