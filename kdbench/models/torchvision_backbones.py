"""torchvision's ImageNet ResNet50 and MobileNetV2 behind the stage view, for transfer learning.

``tv_resnet50`` and ``tv_mobilenet_v2`` are torchvision's own modules (``torchvision.models``), held
whole as ``net``, so their state-dict keys are torchvision's with a ``net.`` prefix, a file in
torchvision's format loads as it is, and ``trainable`` names torchvision's blocks. The stage view
(``stem``, ``stages``, ``classifier``) is a second, unregistered view of the same modules:

- ResNet50: stem = conv1, bn1, relu, maxpool (64 channels, stride 4); stages = layer1..layer4 (256,
  512, 1024, 2048 channels; strides 4, 8, 16, 32); embedding = global average pool (2048);
  classifier = ``fc``.
- MobileNetV2: stem = features.0 (32 channels, stride 2); stages = features 1-3, 4-6, 7-13, 14-17,
  the same block-group boundaries as the CRD MobileNetV2's four stages (24, 32, 96, 320 channels;
  strides 4, 8, 16, 32); embedding = features.18 (1x1 conv to 1280) then global average pool;
  classifier = ``classifier`` (dropout 0.2, linear).

``forward`` is torchvision's forward, operation for operation (tested bit-identical).

Options (model parameters in a suite):

- ``weights``: None (torchvision's random initialisation), ``imagenet`` (torchvision's
  ``IMAGENET1K_V1`` weights, what ``pretrained=True`` gave and the course project used, through
  torchvision's weights API: downloaded into torch's hub cache where there is a network; without one,
  the error names the file to place there), another torchvision weights name (``IMAGENET1K_V2``), or
  the path of a file in torchvision's format (a ``state_dict`` of the torchvision model, optionally
  under ``'model'``/``'state_dict'``, keys with or without ``module.``). The head is always new for
  the suite's classes: the file's ``fc``/``classifier.1`` is loaded only when its shape fits (a file
  saved for the same classes); every other key must fit exactly, or nothing is loaded.
- ``trainable``: None (everything trains) or the torchvision module names that train, e.g.
  ``[layer4, fc]`` or ``[classifier]`` (any dotted prefix, ``features.17`` too). Everything else is
  frozen (``requires_grad`` off) and stays in eval mode when the model is put in train mode, so its
  BatchNorm statistics do not move. (A common fine-tuning script calls ``model.train()`` after
  freezing, which lets the frozen BatchNorm layers normalise with batch statistics and update their
  running averages; here frozen means frozen.)

Neither has a CRD checkpoint format (``crd_key_rules = None``): ``model.pt`` holds our keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.models import MODELS
from kdbench.models.base import Stage, StagedModel, StageInfo
from kdbench.registry import nearest_first


class WeightsError(ValueError):
    """Pretrained weights that cannot be had or do not fit: a user-facing message."""


def _strip_wrappers(state: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(state, dict):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{source}: not a state dict in torchvision's format (a dict of tensors)")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


class TorchvisionBackbone(StagedModel):
    """A torchvision classification network with the stage view; subclasses say how it splits."""

    crd_key_rules: ClassVar[None] = None
    #: torchvision's name of the final linear layer (the new head)
    head_name: ClassVar[str]
    #: torchvision's builder and weights enum, by name (imported on first use: torchvision takes seconds)
    builder: ClassVar[str]
    weights_enum: ClassVar[str]

    def __init__(self, num_classes: int, weights: str | None = None, trainable: Sequence[str] | None = None):
        super().__init__()
        import torchvision.models

        self.net = getattr(torchvision.models, self.builder)(weights=None, num_classes=num_classes)
        self.__dict__["_views"] = self.build_views(self.net)
        self.trainable = None if trainable is None else [str(name) for name in trainable]
        if weights is not None and not any(p.is_meta for p in self.parameters()):
            self.load_torchvision_state(self.read_weights(weights), str(weights))
        self.freeze_all_but(self.trainable)

    # -- the stage view: modules of ``net`` seen a second time, not registered (no duplicate keys) --
    def build_views(self, net: nn.Module) -> dict[str, nn.Module]:
        raise NotImplementedError

    @property
    def stem(self) -> nn.Module:  # type: ignore[override]
        return self._views["stem"]

    @property
    def stages(self) -> nn.ModuleList:  # type: ignore[override]
        return self._views["stages"]

    @property
    def classifier(self) -> nn.Module:  # type: ignore[override]
        return self._views["classifier"]

    # -- weights --
    def read_weights(self, weights: str) -> dict[str, torch.Tensor]:
        import torchvision.models

        enum = getattr(torchvision.models, self.weights_enum)
        choice = "IMAGENET1K_V1" if str(weights).lower() == "imagenet" else str(weights)
        if choice in enum.__members__:
            member = enum[choice]
            target = Path(torch.hub.get_dir()) / "checkpoints" / Path(member.url).name
            try:
                return member.get_state_dict(progress=False, check_hash=True)
            except Exception as error:  # no network, a proxy, a truncated download: the same advice
                raise WeightsError(
                    f"could not get torchvision's {self.builder} {choice} weights ({type(error).__name__}: {error}). "
                    f"Place the file {target} (from {member.url}), or set weights: to a local file in "
                    "torchvision's format."
                ) from None
        path = Path(weights).expanduser()
        if not path.is_file():
            names = ", ".join(["imagenet", *enum.__members__])
            raise WeightsError(f"weights {weights!r}: no such file, and not one of torchvision's names ({names})")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise WeightsError(f"{path}: cannot be read as a PyTorch state dict: {error}") from None

    def load_torchvision_state(self, state: Any, source: str) -> None:
        """Every key but the head's must fit exactly; the head loads only where its shape fits."""
        state = _strip_wrappers(state, source)
        ours = self.net.state_dict()
        head = [key for key in ours if key.startswith(self.head_name + ".")]
        missing = [
            key for key in ours if key not in state and key not in head and not key.endswith("num_batches_tracked")
        ]
        unexpected = [key for key in state if key not in ours]
        mismatched = [
            f"{key} is {list(state[key].shape)} in the file, {list(ours[key].shape)} in the model"
            for key in ours
            if key in state and key not in head and state[key].shape != ours[key].shape
        ]
        if missing or unexpected or mismatched:
            lines = [f"{source} does not fit torchvision's {self.builder}, so nothing was loaded:"]
            for title, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", mismatched),
            ):
                if keys:
                    lines.append(f"  {title} ({len(keys)}): {'; '.join(keys[:5])}" + (" ..." if len(keys) > 5 else ""))
            raise WeightsError("\n".join(lines))
        fitting_head = all(key in state and state[key].shape == ours[key].shape for key in head)
        loaded = {key: state[key] if key in state and (key not in head or fitting_head) else ours[key] for key in ours}
        self.net.load_state_dict(loaded)

    # -- freezing --
    def _trains(self, name: str) -> bool:
        return self.trainable is None or any(name == t or name.startswith(t + ".") for t in self.trainable)

    def freeze_all_but(self, trainable: list[str] | None) -> None:
        if trainable is None:
            return
        names = [name for name, _ in self.net.named_parameters()]
        prefixes = sorted({".".join(name.split(".")[:depth]) for name in names for depth in range(1, 3)})
        unknown = [t for t in trainable if not any(n == t or n.startswith(t + ".") for n in names)]
        if unknown:
            choices = [p for p in prefixes if "." not in p] + [p for p in prefixes if "." in p]
            raise WeightsError(
                f"trainable: {', '.join(map(repr, unknown))} names no block of {self.builder}; "
                f"choose from {', '.join(nearest_first(unknown[0], choices)[:12])}, ..."
            )
        for name, parameter in self.net.named_parameters():
            parameter.requires_grad_(self._trains(name))

    def train(self, mode: bool = True) -> TorchvisionBackbone:
        super().train(mode)
        if mode and self.trainable is not None:
            for name, module in self.net.named_modules():
                ancestor = name == "" or any(t.startswith(name + ".") for t in self.trainable)
                if not ancestor and not self._trains(name):
                    module.training = False  # this module only; its trainable descendants keep their own flag
        return self


class TorchvisionResNet50(TorchvisionBackbone):
    crd_key_rules: ClassVar[None] = None  # no CRD counterpart: model.pt keeps our keys
    head_name = "fc"
    builder = "resnet50"
    weights_enum = "ResNet50_Weights"

    def __init__(self, num_classes: int, weights: str | None = None, trainable: Sequence[str] | None = None):
        super().__init__(num_classes, weights, trainable)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding_dim = 2048
        self.feature_info = [StageInfo(64, 4), StageInfo(256, 4), StageInfo(512, 8), StageInfo(1024, 16)]
        self.feature_info.append(StageInfo(2048, 32))

    def build_views(self, net: nn.Module) -> dict[str, nn.Module]:
        layers = [net.layer1, net.layer2, net.layer3, net.layer4]
        return {
            "stem": nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool),
            "stages": nn.ModuleList(Stage(*layer.children()) for layer in layers),
            "classifier": net.fc,
        }


class TorchvisionMobileNetV2(TorchvisionBackbone):
    crd_key_rules: ClassVar[None] = None
    head_name = "classifier"
    builder = "mobilenet_v2"
    weights_enum = "MobileNet_V2_Weights"
    #: features indices of each stage (the CRD MobileNetV2's stage boundaries)
    stage_features: ClassVar[tuple[range, ...]] = (range(1, 4), range(4, 7), range(7, 14), range(14, 18))

    def __init__(self, num_classes: int, weights: str | None = None, trainable: Sequence[str] | None = None):
        super().__init__(num_classes, weights, trainable)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding_dim = 1280
        self.feature_info = [StageInfo(32, 2), StageInfo(24, 4), StageInfo(32, 8), StageInfo(96, 16)]
        self.feature_info.append(StageInfo(320, 32))

    def build_views(self, net: nn.Module) -> dict[str, nn.Module]:
        return {
            "stem": net.features[0],
            "stages": nn.ModuleList(Stage(*(net.features[i] for i in indices)) for indices in self.stage_features),
            "classifier": net.classifier,
        }

    def embed(self, last_stage_output: torch.Tensor) -> torch.Tensor:
        # torchvision: features (whose last entry is the 1x1 conv to 1280), adaptive average pool, flatten
        return torch.flatten(F.adaptive_avg_pool2d(self.net.features[18](last_stage_output), (1, 1)), 1)


@MODELS.register("tv_resnet50", aliases=("TV-ResNet50", "torchvision_resnet50"))
def tv_resnet50(num_classes: int, weights: str | None = None, trainable: list | None = None) -> TorchvisionResNet50:
    return TorchvisionResNet50(num_classes, weights, trainable)


@MODELS.register("tv_mobilenet_v2", aliases=("TV-MobileNetV2", "torchvision_mobilenet_v2"))
def tv_mobilenet_v2(
    num_classes: int, weights: str | None = None, trainable: list | None = None
) -> TorchvisionMobileNetV2:
    return TorchvisionMobileNetV2(num_classes, weights, trainable)
