"""Parameter and FLOP counts per model, for ``kdbench plan`` and ``result.json``.

FLOPs come from torch's own counter (``torch.utils.flop_counter.FlopCounterMode``) on one image,
run on the meta device: shapes only, no weights allocated, no arithmetic, no RNG drawn. The counter
counts a multiply-add as 2 FLOPs and counts matrix products and convolutions only (BN, ReLU, pooling
and additions are not counted); halve it for the "MACs" some papers report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kdbench.models import MODELS, create_model


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BN statistics excluded)."""
    return sum(parameter.numel() for parameter in model.parameters())


def _frozen(options: Mapping[str, Any] | None) -> tuple:
    """Model options as a hashable key (lists become tuples) for the caches below."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in (options or {}).items()))


def _thawed(options: tuple) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options}


@cache
def _parameters(name: str, num_classes: int, image_shape: tuple[int, ...] | None = None, options: tuple = ()) -> int:
    with torch.device("meta"):
        return count_parameters(create_model(name, num_classes, image_shape, **_thawed(options)))


def count_model_parameters(
    name: str, num_classes: int, image_shape: Sequence[int] | None = None, options: Mapping[str, Any] | None = None
) -> int:
    """``count_parameters`` of a fresh ``name`` model (aliases accepted), without building its weights;
    ``image_shape`` matters only to families whose layers depend on it (the course MNIST networks),
    ``options`` are the family's own (``first_pool_stride``, ``trainable``, ...)."""
    shape = None if image_shape is None else tuple(int(size) for size in image_shape)
    return _parameters(MODELS.canonical(name), num_classes, shape, _frozen(options))


@cache
def _flops(name: str, num_classes: int, image_shape: tuple[int, ...], options: tuple = ()) -> int:
    with torch.device("meta"):
        model = create_model(name, num_classes, image_shape, **_thawed(options)).eval()
        image = torch.empty(1, *image_shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    return counter.get_total_flops()


def count_flops(
    name: str, num_classes: int, image_shape: Sequence[int] = (3, 32, 32), options: Mapping[str, Any] | None = None
) -> int:
    """FLOPs of one forward pass of model ``name`` on one image of ``image_shape`` (channels, height, width)."""
    shape = tuple(int(size) for size in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (channels, height, width), got {tuple(image_shape)}")
    return _flops(MODELS.canonical(name), num_classes, shape, _frozen(options))
