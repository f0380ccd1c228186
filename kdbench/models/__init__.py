"""Model zoo: the CRD code's CIFAR networks behind one stage view (see ``base``)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from functools import cache
from typing import Any

import torch

from kdbench.models.base import Features, Stage, StagedModel, StageInfo
from kdbench.registry import Registry

MODELS: Registry = Registry("model")


def create_model(name: str, num_classes: int, image_shape: Sequence[int] | None = None, **options: Any) -> StagedModel:
    """A fresh model; initial weights come from torch's global RNG (seed it first).

    ``image_shape`` (C, H, W) reaches the families whose layers depend on it (the course project's
    MNIST networks) and is ignored by the others; ``options`` are a family's own parameters
    (``weights``, ``trainable`` of the torchvision backbones).
    """
    factory = MODELS.get(name)
    if image_shape is not None and "image_shape" in inspect.signature(factory).parameters:
        options["image_shape"] = tuple(int(size) for size in image_shape)
    return factory(num_classes=num_classes, **options)


@cache
def model_feature_info(name: str, num_classes: int = 100) -> tuple[StageInfo, ...]:
    """``feature_info`` without allocating weights (the model is built on the meta device)."""
    with torch.device("meta"):
        return tuple(create_model(name, num_classes).feature_info)


def _register_families() -> None:
    # Importing a family module registers its models.
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if module.name not in {"base"}:
            importlib.import_module(f"{__name__}.{module.name}")


_register_families()

__all__ = ["MODELS", "Features", "Stage", "StageInfo", "StagedModel", "create_model", "model_feature_info"]
