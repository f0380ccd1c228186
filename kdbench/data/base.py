"""The data layer: a data set is its split arrays plus how to augment them.

Every data set hands over its splits as uint8 NCHW tensors and int64 labels. The default loader
(``TensorBatches``) keeps a split on the training device, draws the batch order from a seeded
permutation and augments whole batches at once (random crop with zero padding, horizontal flip),
fusing the normalisation. The batch order and augmentation of epoch ``e`` depend only on the run's
seed and ``e``, so a run resumed at an epoch boundary sees exactly the data it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch

from kdbench.errors import DataError  # noqa: F401  (raised by every data set; defined torch-free)


class DatasetShape(NamedTuple):
    """What planning needs to know of a data set without loading it: class count and image shape."""

    num_classes: int
    image_shape: tuple[int, int, int]  # C x H x W


@dataclass(frozen=True)
class Augmentation:
    """Train-time augmentation: random crop of the original size after zero padding, and flips."""

    crop_padding: int = 0
    horizontal_flip: bool = False


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DataSource:
    """One loaded data set."""

    name: str
    num_classes: int
    train: Split
    test: Split
    mean: tuple[float, ...]  # per channel, on the 0..1 scale
    std: tuple[float, ...]
    augmentation: Augmentation

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]


def epoch_generator(seed: int, epoch: int, stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for one (seed, epoch, stream): resuming at any epoch needs no saved RNG state."""
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003 + epoch * 7_919 + stream) % (2**63))
    return generator


def random_crop_flip(images: torch.Tensor, augmentation: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop (after zero padding) and horizontal flip, for a whole batch at once.

    Same distribution as torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()``:
    each image gets an offset uniform in [0, 2 * padding] on both axes and a flip with p = 0.5.
    """
    n, _, h, w = images.shape
    pad = augmentation.crop_padding
    if pad:
        padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=images.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=images.device)
        rows = (dy[:, None] + torch.arange(h, device=images.device)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=images.device)[None, :])[:, None, None, :]
        batch = torch.arange(n, device=images.device)[:, None, None, None]
        channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        images = padded[batch, channels, rows, cols]
    if augmentation.horizontal_flip:
        flip = torch.rand(n, generator=generator, device=images.device) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
    return images


class TensorBatches:
    """Batches of one split held on ``device``: seeded order, batched augmentation, fused normalisation.

    Every image appears once per epoch; the last partial batch is kept (as the CRD code's
    DataLoader does, ``drop_last=False``). ``with_indices`` adds each image's index in the split as a
    third element (CRD's memory bank is indexed by it, as the CRD code's ``CIFAR100Instance``).
    """

    def __init__(
        self,
        split: Split,
        *,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device | str = "cpu",
        augmentation: Augmentation | None = None,
        shuffle: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        with_indices: bool = False,
    ):
        self.device = torch.device(device)
        self.with_indices = with_indices
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.batch_size = batch_size
        self.augmentation = augmentation
        self.shuffle = shuffle
        self.seed = seed
        self.channels_last = channels_last
        self.dtype = dtype
        # x / 255 then (x - mean) / std, folded into one multiply-add (constants computed in float64)
        std_t = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
        self.scale = (1.0 / (255.0 * std_t)).to(self.device, dtype)
        self.shift = (-mean_t / std_t).to(self.device, dtype)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        generator = epoch_generator(self.seed, epoch, stream=1, device=self.device)
        n = len(self.labels)
        order = torch.randperm(n, generator=generator, device=self.device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            index = slice(start, start + self.batch_size) if order is None else order[start : start + self.batch_size]
            images = self.images[index]
            if self.augmentation is not None:
                images = random_crop_flip(images, self.augmentation, generator)
            images = images.to(self.dtype) * self.scale + self.shift
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            if self.with_indices:
                positions = torch.arange(n, device=self.device)[index] if order is None else index
                yield images, self.labels[index], positions
            else:
                yield images, self.labels[index]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)
