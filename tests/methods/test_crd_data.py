"""The data side of CRD: both loaders can yield each image's index in the split, and nothing else changes."""

from __future__ import annotations

import pytest
import torch

from kdbench.data import load_dataset
from kdbench.data.loaders import make_loader


@pytest.mark.parametrize("kind", ["tensor", "torchvision"])
def test_loaders_yield_the_images_positions_in_the_split(kind: str) -> None:
    data = load_dataset("synthetic", image_size=8, train_size=20, test_size=4, num_classes=3, augment=True)
    common = dict(
        kind=kind, train=True, batch_size=6, mean=data.mean, std=data.std, augmentation=data.augmentation, seed=3
    )
    plain = make_loader(data.train, device="cpu", **common)
    indexed = make_loader(data.train, device="cpu", with_indices=True, **common)
    seen = []
    for (images, labels), (images_i, labels_i, indices) in zip(plain.epoch(1), indexed.epoch(1), strict=True):
        assert torch.equal(images, images_i) and torch.equal(labels, labels_i)  # the same batches
        assert indices.dtype == torch.int64
        assert torch.equal(data.train.labels[indices], labels)
        seen += indices.tolist()
    assert sorted(seen) == list(range(20))
    unaugmented = make_loader(data.train, device="cpu", with_indices=True, **{**common, "augmentation": None})
    images, _, indices = next(iter(unaugmented.epoch(0)))
    expected = (data.train.images[indices].float() / 255 - torch.tensor(data.mean).view(1, -1, 1, 1)) / torch.tensor(
        data.std
    ).view(1, -1, 1, 1)
    assert torch.allclose(images, expected, atol=1e-5)
