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
    """Train-time augmentation: random crop of the original size after zero padding, and flips; or
    torchvision's ``RandomResizedCrop`` (a box of ``resized_crop_scale`` of the area and an aspect
    ratio in ``resized_crop_ratio``, resized back to the image size), the ImageNet-style crop."""

    crop_padding: int = 0
    horizontal_flip: bool = False
    resized_crop_scale: tuple[float, float] | None = None
    resized_crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)


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


def random_resized_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(n, 4) boxes (top, left, box height, box width) drawn as torchvision's
    ``RandomResizedCrop.get_params`` draws them, for a whole batch: up to 10 attempts of an area fraction
    uniform in ``scale`` and a log-uniform aspect ratio in ``ratio``, the first that fits, at a uniform
    position; an image where none fits gets the centre crop with the ratio clamped."""
    import math

    attempts = 10
    area = float(height * width)
    target = area * (
        scale[0]
        + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=generator, device=device, dtype=torch.float64)
    )
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(
        log_low
        + (log_high - log_low) * torch.rand(n, attempts, generator=generator, device=device, dtype=torch.float64)
    )
    box_w = torch.round(torch.sqrt(target * aspect))
    box_h = torch.round(torch.sqrt(target / aspect))
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    first = torch.argmax(fits.to(torch.int8), dim=1)  # the first attempt that fits (0 when none does)
    rows = torch.arange(n, device=device)
    h, w = box_h[rows, first], box_w[rows, first]
    # the centre crop of torchvision's fallback, for images where no attempt fitted
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback_w, fallback_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fallback_w, fallback_h = round(height * ratio[1]), height
    else:
        fallback_w, fallback_h = width, height
    none_fit = ~fits.any(dim=1)
    h = torch.where(none_fit, torch.full_like(h, fallback_h), h)
    w = torch.where(none_fit, torch.full_like(w, fallback_w), w)
    # a position uniform over the valid offsets (torch.randint's per-element bound, drawn as a fraction)
    top = torch.floor(torch.rand(n, generator=generator, device=device, dtype=torch.float64) * (height - h + 1))
    left = torch.floor(torch.rand(n, generator=generator, device=device, dtype=torch.float64) * (width - w + 1))
    top = torch.where(none_fit, torch.div(height - h, 2, rounding_mode="floor"), top)
    left = torch.where(none_fit, torch.div(width - w, 2, rounding_mode="floor"), left)
    return torch.stack([top, left, h, w], dim=1)


def _source_positions(start: torch.Tensor, size: torch.Tensor, out: int) -> tuple[torch.Tensor, ...]:
    """For each image (rows) and output pixel (columns): the two source pixels and the weight of the
    second, bilinear at pixel centres (``align_corners=False``) inside the box [start, start + size)."""
    centres = (torch.arange(out, device=start.device, dtype=torch.float64) + 0.5)[None, :]
    position = (centres * (size[:, None] / out) - 0.5).clamp(min=0)  # relative to the box, clamped as torch does
    low = torch.floor(position)
    weight = position - low
    last = (size[:, None] - 1).expand_as(low)
    low = torch.minimum(low, last)
    high = torch.minimum(low + 1, last)
    return (start[:, None] + low).long(), (start[:, None] + high).long(), weight


def crop_and_resize(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Each image's box (top, left, height, width) resized to the image's size, as float 0..255 pixels:
    bilinear at pixel centres (``align_corners=False``, the box's edge pixels repeated past its border),
    as torchvision's tensor ``resized_crop``, without rounding back to uint8; the whole batch at once."""
    n, channels, height, width = images.shape
    top, left, h, w = boxes.unbind(1)
    y0, y1, wy = _source_positions(top, h, height)
    x0, x1, wx = _source_positions(left, w, width)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    chan = torch.arange(channels, device=images.device)[None, :, None, None]

    def at(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return images[batch, chan, rows[:, None, :, None], cols[:, None, None, :]].to(torch.float32)

    wy = wy[:, None, :, None].to(torch.float32)
    wx = wx[:, None, None, :].to(torch.float32)
    top_row = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom_row = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top_row * (1 - wy) + bottom_row * wy


def random_resized_crop(images: torch.Tensor, augmentation: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """``RandomResizedCrop`` of every image of a batch to its own size (boxes drawn as torchvision draws
    them, then ``crop_and_resize``). A box is never larger than the image, so the resize only enlarges
    and antialiasing never applies."""
    n, _, height, width = images.shape
    assert augmentation.resized_crop_scale is not None
    boxes = random_resized_crop_boxes(
        n, height, width, augmentation.resized_crop_scale, augmentation.resized_crop_ratio, generator, images.device
    )
    return crop_and_resize(images, boxes)


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
            if self.augmentation is not None and self.augmentation.resized_crop_scale is not None:
                images = random_resized_crop(images, self.augmentation, generator)
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
