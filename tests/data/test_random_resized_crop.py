"""RandomResizedCrop on the fast path: torchvision's box distribution, its resize, batched."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from kdbench.data.base import (
    Augmentation,
    Split,
    TensorBatches,
    crop_and_resize,
    random_resized_crop_boxes,
)

SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def summary(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    top, left, h, w = boxes.double().unbind(1)
    return torch.stack(
        [h * w / (height * width), torch.log(w / h), (top + h / 2) / height, (left + w / 2) / width, h / height]
    )


@pytest.mark.parametrize(("height", "width"), [(32, 32), (24, 40)])
def test_boxes_follow_torchvision_s_distribution(height: int, width: int) -> None:
    n = 20_000
    ours = random_resized_crop_boxes(n, height, width, SCALE, RATIO, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    image = torch.zeros(1, height, width)
    reference = torch.tensor([RandomResizedCrop.get_params(image, list(SCALE), list(RATIO)) for _ in range(n)])
    ours_stats, ref_stats = summary(ours, height, width), summary(reference, height, width)
    for name, a, b in zip(["area", "log aspect", "centre y", "centre x", "height"], ours_stats, ref_stats, strict=True):
        standard_error = math.sqrt(a.var() / n + b.var() / n)
        assert abs(a.mean() - b.mean()) < 4 * standard_error, name
        assert abs(a.std() - b.std()) < 0.05 * b.std() + 1e-9, name
    assert (ours[:, 2] >= 1).all() and (ours[:, 0] + ours[:, 2] <= height).all()
    assert (ours[:, 1] + ours[:, 3] <= width).all()


def test_where_no_box_fits_the_centre_crop_is_torchvision_s() -> None:
    image = torch.zeros(1, 20, 40)
    torch.manual_seed(0)
    reference = RandomResizedCrop.get_params(image, [1.5, 2.0], list(RATIO))
    ours = random_resized_crop_boxes(3, 20, 40, (1.5, 2.0), RATIO, torch.Generator().manual_seed(0))
    assert all(tuple(int(v) for v in box) == tuple(reference) for box in ours)


def test_crop_and_resize_equals_torchvision_s_resized_crop() -> None:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (6, 3, 16, 20), generator=generator, dtype=torch.uint8)
    boxes = random_resized_crop_boxes(6, 16, 20, SCALE, RATIO, generator)
    ours = crop_and_resize(images, boxes)
    for image, box, out in zip(images, boxes.long().tolist(), ours, strict=True):
        expected = TF.resized_crop(image.double(), *box, [16, 20], antialias=False)
        torch.testing.assert_close(out.double(), expected, atol=1e-3, rtol=0)


def test_the_fast_path_applies_it_per_seed_and_epoch() -> None:
    images = torch.randint(0, 256, (10, 3, 12, 12), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    split = Split(images, torch.arange(10) % 2)
    augmentation = Augmentation(resized_crop_scale=SCALE)

    def first(seed: int, epoch: int) -> torch.Tensor:
        batches = TensorBatches(
            split, batch_size=5, mean=(0.5,) * 3, std=(0.25,) * 3, augmentation=augmentation, shuffle=True, seed=seed
        )
        return next(iter(batches.epoch(epoch)))[0]

    assert first(0, 0).shape == (5, 3, 12, 12)
    assert torch.equal(first(0, 0), first(0, 0))
    assert not torch.equal(first(0, 0), first(0, 1)) and not torch.equal(first(0, 0), first(1, 0))
    plain = TensorBatches(split, batch_size=5, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True, seed=0)
    assert not torch.equal(first(0, 0), next(iter(plain.epoch(0)))[0])


def test_the_torchvision_loader_applies_torchvision_s_transform() -> None:
    from torchvision import transforms

    from kdbench.data.loaders import TorchvisionBatches

    images = torch.randint(0, 256, (4, 3, 12, 12), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    loader = TorchvisionBatches(
        Split(images, torch.arange(4) % 2),
        batch_size=4,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        augmentation=Augmentation(resized_crop_scale=SCALE),
    )
    assert any(isinstance(step, transforms.RandomResizedCrop) for step in loader.transform.transforms)
    assert next(iter(loader.epoch(0)))[0].shape == (4, 3, 12, 12)
