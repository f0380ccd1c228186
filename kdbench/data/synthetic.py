"""``synthetic``: learnable random images of any shape, for tests and benchmarks.

Each class has a fixed random prototype image; a sample is its class prototype plus noise, so a
network can learn it and accuracy is meaningful. Fully determined by ``data_seed``.
"""

from __future__ import annotations

import torch

from kdbench.data import DATASETS
from kdbench.data.base import Augmentation, DatasetShape, DataSource, Split


def _make_split(prototypes: torch.Tensor, size: int, noise: float, generator: torch.Generator) -> Split:
    num_classes = prototypes.shape[0]
    labels = torch.arange(size) % num_classes
    labels = labels[torch.randperm(size, generator=generator)]
    images = prototypes[labels] + noise * torch.randn((size, *prototypes.shape[1:]), generator=generator)
    return Split((images.clamp(0, 1) * 255).round().to(torch.uint8), labels)


def _shape(config: dict) -> DatasetShape:
    return DatasetShape(config["num_classes"], (config["channels"], config["image_size"], config["image_size"]))


@DATASETS.register("synthetic", aliases=("random",), shape=_shape)
def synthetic(
    *,
    num_classes: int = 10,
    image_size: int = 32,
    channels: int = 3,
    train_size: int = 512,
    test_size: int = 256,
    noise: float = 0.25,
    augment: bool = True,
    data_seed: int = 0,
) -> DataSource:
    generator = torch.Generator().manual_seed(data_seed)
    prototypes = torch.rand((num_classes, channels, image_size, image_size), generator=generator)
    return DataSource(
        name="synthetic",
        num_classes=num_classes,
        train=_make_split(prototypes, train_size, noise, generator),
        test=_make_split(prototypes, test_size, noise, generator),
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        augmentation=Augmentation(crop_padding=image_size // 8, horizontal_flip=True) if augment else Augmentation(),
    )
