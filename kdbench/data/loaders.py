"""Batch loaders for one split: the device-resident fast path and the CRD code's reference path.

``make_loader(split, kind=...)`` returns an object with ``epoch(e)`` (an iterator of normalised
``(images, labels)`` batches on ``device``) and ``len()`` (batches per epoch). Both kinds visit every
image once per epoch, keep the last partial batch, shuffle only the train split, and depend only on
``(seed, e)``, so a run resumed at an epoch boundary sees the batches it would have seen.

- ``tensor`` (default): ``TensorBatches``, the split held on the device as uint8, batched crop and
  flip, fused normalisation (``kdbench.data.base``).
- ``torchvision``: a ``torch.utils.data.DataLoader`` with the CRD code's per-image PIL transforms
  (ToPILImage, RandomCrop(size, padding), RandomHorizontalFlip, ToTensor, Normalize). The batch
  order comes from a seeded permutation (the one ``tensor`` uses on CPU), and each image's transform
  runs under its own seed derived from ``(seed, epoch, index)``, the default CPU generator saved and
  restored around it, so results do not depend on ``num_workers`` and the caller's RNG is untouched.

The two kinds draw the same distributions of crops and flips but not the same draws: they agree
on batch order and, without augmentation, on every pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from kdbench.data.base import Augmentation, Split, TensorBatches, epoch_generator
from kdbench.registry import Registry, unknown_name_message


class Batches(Protocol):
    """What the training loop iterates: ``epoch(e)`` batches (images, labels[, indices]) and ``len()``."""

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]: ...

    def __len__(self) -> int: ...


LOADERS: Registry = Registry("data loader")

ORDER_STREAM, AUGMENT_STREAM, LOADER_STREAM = 1, 2, 3  # streams of epoch_generator; 1 is TensorBatches' order


def batch_order(size: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    """The indices of one epoch: TensorBatches' permutation on CPU, or 0..size-1 without shuffling."""
    if not shuffle:
        return torch.arange(size)
    return torch.randperm(size, generator=epoch_generator(seed, epoch, ORDER_STREAM))


class TransformedSplit(Dataset):
    """A split seen through per-image PIL transforms, each image under its own seed for one epoch."""

    def __init__(self, split: Split, transform: Callable, epoch_seed: int | None, with_indices: bool = False):
        self.split = split
        self.transform = transform
        self.epoch_seed = epoch_seed
        self.with_indices = with_indices

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | tuple[torch.Tensor, int, int]:
        image = self.split.images[index]
        if self.epoch_seed is None:
            return self._sample(self.transform(image), index)
        # torchvision's random transforms draw from the default CPU generator; CUDA generators stay untouched
        saved = torch.default_generator.get_state()
        try:
            torch.default_generator.manual_seed((self.epoch_seed + index) % 2**63)
            return self._sample(self.transform(image), index)
        finally:
            torch.default_generator.set_state(saved)

    def _sample(self, image: torch.Tensor, index: int) -> tuple[torch.Tensor, int] | tuple[torch.Tensor, int, int]:
        """(image, label), plus the index in the split with ``with_indices`` (the CRD code's ``CIFAR100Instance``)."""
        label = int(self.split.labels[index])
        return (image, label, index) if self.with_indices else (image, label)


class TorchvisionBatches:
    """The reference path: a DataLoader over ``split`` with the CRD code's per-image transforms."""

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
        num_workers: int = 0,
        with_indices: bool = False,
    ):
        self.split = split
        self.with_indices = with_indices
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.shuffle = shuffle
        self.seed = seed
        self.channels_last = channels_last
        self.dtype = dtype
        self.num_workers = num_workers
        from torchvision import transforms  # imported here: seconds to import, and only this path needs it

        steps: list = [transforms.ToPILImage()]
        self.augmented = augmentation is not None and (
            augmentation.crop_padding > 0 or augmentation.horizontal_flip or augmentation.resized_crop_scale is not None
        )
        if augmentation is not None and augmentation.resized_crop_scale is not None:
            steps.append(
                transforms.RandomResizedCrop(
                    tuple(split.images.shape[-2:]),
                    scale=augmentation.resized_crop_scale,
                    ratio=augmentation.resized_crop_ratio,
                    interpolation=transforms.InterpolationMode.BILINEAR,
                )
            )
        if augmentation is not None and augmentation.crop_padding > 0:
            steps.append(transforms.RandomCrop(tuple(split.images.shape[-2:]), padding=augmentation.crop_padding))
        if augmentation is not None and augmentation.horizontal_flip:
            steps.append(transforms.RandomHorizontalFlip())
        steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
        self.transform = transforms.Compose(steps)

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        epoch_seed = None
        if self.augmented:
            generator = epoch_generator(self.seed, epoch, AUGMENT_STREAM)
            epoch_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        loader = DataLoader(
            TransformedSplit(self.split, self.transform, epoch_seed, self.with_indices),
            batch_size=self.batch_size,
            sampler=batch_order(len(self.split), self.seed, epoch, self.shuffle).tolist(),
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=epoch_generator(self.seed, epoch, LOADER_STREAM),  # its worker seeds; not the global RNG
        )
        for images, labels, *indices in loader:
            images = images.to(self.device, self.dtype, non_blocking=True)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, labels.to(self.device, non_blocking=True), *(i.to(self.device) for i in indices)


@LOADERS.register("tensor")
def _tensor_loader(split: Split, *, num_workers: int, **options: object) -> Batches:
    return TensorBatches(split, **options)  # type: ignore[arg-type]


@LOADERS.register("torchvision")
def _torchvision_loader(split: Split, *, num_workers: int, **options: object) -> Batches:
    return TorchvisionBatches(split, num_workers=num_workers, **options)  # type: ignore[arg-type]


def make_loader(
    split: Split,
    *,
    kind: str,
    train: bool,
    batch_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augmentation: Augmentation | None,
    seed: int,
    device: torch.device | str,
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
    num_workers: int = 0,
    with_indices: bool = False,
) -> Batches:
    """Batches of ``split``: shuffled and augmented when ``train``, in order and plain otherwise.

    ``with_indices``: each batch is ``(images, labels, indices)``, the images' positions in ``split``.
    """
    if kind not in LOADERS:
        raise ValueError(unknown_name_message("data loader", kind, LOADERS.names()) + " (the `data.loader` key)")
    if len(mean) != split.images.shape[1] or len(std) != split.images.shape[1]:
        raise ValueError(
            f"mean and std need one value per channel ({split.images.shape[1]}), got {len(mean)} and {len(std)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    return LOADERS.get(kind)(
        split,
        num_workers=num_workers,
        batch_size=batch_size,
        mean=mean,
        std=std,
        device=device,
        augmentation=augmentation if train else None,
        shuffle=train,
        seed=seed,
        channels_last=channels_last,
        dtype=dtype,
        with_indices=with_indices,
    )
