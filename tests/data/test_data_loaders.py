"""Both loader kinds: epoch coverage, the last partial batch, determinism, resuming, normalisation."""

from __future__ import annotations

import pytest
import torch

from kdbench.data.base import Augmentation, Split, TensorBatches
from kdbench.data.loaders import make_loader

KINDS = ["tensor", "torchvision"]
MEAN, STD = (0.2, 0.5, 0.7), (0.3, 0.25, 0.1)


def numbered_split(count: int = 37, size: int = 8, seed: int = 0) -> Split:
    """Random images whose label is their index, so a batch says which images it holds."""
    images = torch.randint(
        0, 256, (count, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )
    return Split(images, torch.arange(count))


def loader(kind: str, split: Split, train: bool = True, seed: int = 0, batch_size: int = 8, **options: object):
    return make_loader(
        split,
        kind=kind,
        train=train,
        batch_size=batch_size,
        mean=MEAN,
        std=STD,
        augmentation=Augmentation(crop_padding=2, horizontal_flip=True),
        seed=seed,
        device="cpu",
        **options,
    )


def batches(kind: str, split: Split, epoch: int = 0, **options: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader(kind, split, **options).epoch(epoch))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("train", [True, False])
def test_every_image_once_per_epoch_and_the_last_partial_batch_kept(kind: str, train: bool) -> None:
    split = numbered_split(37)
    batch_loader = loader(kind, split, train=train)
    assert len(batch_loader) == 5
    for epoch in range(2):
        sizes, seen = [], []
        for images, labels in batch_loader.epoch(epoch):
            assert images.shape[1:] == (3, 8, 8) and images.dtype == torch.float32 and labels.dtype == torch.int64
            sizes.append(len(labels))
            seen += labels.tolist()
        assert sizes == [8, 8, 8, 8, 5]
        assert sorted(seen) == list(range(37))
        assert (seen == list(range(37))) is not train  # shuffled for train, in order for test


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_and_epoch_give_the_same_batches(kind: str) -> None:
    split = numbered_split()
    first, again = batches(kind, split, epoch=3), batches(kind, split, epoch=3)
    for (images_a, labels_a), (images_b, labels_b) in zip(first, again, strict=True):
        assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)
    other_epoch = batches(kind, split, epoch=4)
    assert not torch.equal(torch.cat([labels for _, labels in first]), torch.cat([labels for _, labels in other_epoch]))
    other_seed = batches(kind, split, epoch=3, seed=1)
    assert not torch.equal(torch.cat([labels for _, labels in first]), torch.cat([labels for _, labels in other_seed]))


@pytest.mark.parametrize("kind", KINDS)
def test_resuming_at_an_epoch_boundary_sees_the_same_data(kind: str) -> None:
    """A fresh loader (a resumed run) asked for epoch 2 gives what the running one gave after epochs 0 and 1."""
    split = numbered_split()
    running = loader(kind, split)
    torch.manual_seed(123)  # whatever the training step does to the global RNG in between
    for epoch in range(2):
        for _ in running.epoch(epoch):
            torch.rand(5)
    continued = list(running.epoch(2))
    resumed = list(loader(kind, split).epoch(2))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(continued, resumed, strict=True))


def test_the_reference_path_leaves_the_global_rng_alone_and_ignores_worker_count() -> None:
    split = numbered_split(20)
    state = torch.get_rng_state()
    in_process = batches("torchvision", split, epoch=1)
    assert torch.equal(torch.get_rng_state(), state)
    with_workers = batches("torchvision", split, epoch=1, num_workers=2)
    for (images_a, labels_a), (images_b, labels_b) in zip(in_process, with_workers, strict=True):
        assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)


def test_both_kinds_give_the_same_batch_order_and_the_same_test_pixels() -> None:
    split = numbered_split()
    train_orders = [[labels.tolist() for _, labels in batches(kind, split, epoch=5)] for kind in KINDS]
    assert train_orders[0] == train_orders[1]
    tensor_test, reference_test = (batches(kind, split, train=False) for kind in KINDS)
    for (images_a, labels_a), (images_b, labels_b) in zip(tensor_test, reference_test, strict=True):
        assert torch.equal(labels_a, labels_b)
        torch.testing.assert_close(images_a, images_b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_normalisation_is_pixel_over_255_minus_mean_over_std(kind: str) -> None:
    split = numbered_split(10)
    images, labels = next(iter(loader(kind, split, train=False, batch_size=10).epoch(0)))
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    expected = (split.images.double() / 255 - mean.double()) / std.double()
    torch.testing.assert_close(images.double(), expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(labels, split.labels)


def test_tensor_batches_keeps_its_constructor_interface() -> None:
    split = numbered_split(10)
    batches_ = TensorBatches(
        split,
        batch_size=4,
        mean=MEAN,
        std=STD,
        device="cpu",
        augmentation=None,
        shuffle=False,
        seed=0,
        channels_last=False,
        dtype=torch.float64,
    )
    images, _ = next(iter(batches_.epoch(0)))
    mean, std = (torch.tensor(values, dtype=torch.float64).view(1, 3, 1, 1) for values in (MEAN, STD))
    expected = (split.images[:4].double() / 255 - mean) / std
    torch.testing.assert_close(images, expected)
    assert len(batches_) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_dtype_and_channels_last_are_applied(kind: str) -> None:
    images, _ = batches(kind, numbered_split(), dtype=torch.float64, channels_last=True)[0]
    assert images.dtype == torch.float64 and images.is_contiguous(memory_format=torch.channels_last)


def test_unknown_kind_and_bad_statistics_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="Unknown data loader 'torchvison'. Did you mean 'torchvision'"):
        loader("torchvison", numbered_split())
    with pytest.raises(ValueError, match=r"one value per channel \(3\), got 1 and 3"):
        make_loader(
            numbered_split(),
            kind="tensor",
            train=True,
            batch_size=4,
            mean=(0.5,),
            std=STD,
            augmentation=None,
            seed=0,
            device="cpu",
        )
