"""The batched crop and flip draw the same distribution as torchvision's RandomCrop + RandomHorizontalFlip.

Every image carries its own coordinates (channel 0 = row + 1, channel 1 = column + 1, 0 in the
padding), so each augmented image tells which crop offset and flip it got; the whole image is then
compared with that crop of the zero-padded original.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from kdbench.data.base import Augmentation, Split
from kdbench.data.loaders import make_loader

DRAWS = 2000


def coordinate_images(count: int, size: int) -> Split:
    rows = torch.arange(1, size + 1, dtype=torch.uint8)[:, None].expand(size, size)
    cols = torch.arange(1, size + 1, dtype=torch.uint8)[None, :].expand(size, size)
    image = torch.stack([rows, cols, torch.full((size, size), 7, dtype=torch.uint8)])
    return Split(image.expand(count, 3, size, size).contiguous(), torch.arange(count))


def recover(images: torch.Tensor, padding: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each image's (row offset, column offset, flipped), checked against the whole expected crop."""
    images = images.numpy().astype(np.int64)
    size = images.shape[-1]
    centre = size // 2
    padded = np.pad(
        coordinate_images(1, size).images[0].numpy().astype(np.int64), ((0, 0), (padding,) * 2, (padding,) * 2)
    )
    flips = images[:, 1, centre, centre + 1] < images[:, 1, centre, centre]
    rows = images[:, 0, centre, centre] - 1 - centre + padding
    source_cols = np.where(flips, size - 1 - centre, centre)
    cols = images[:, 1, centre, centre] - 1 - source_cols + padding
    for row, col, flipped in set(zip(rows.tolist(), cols.tolist(), flips.tolist(), strict=True)):
        expected = padded[:, row : row + size, col : col + size]
        expected = expected[:, :, ::-1] if flipped else expected
        group = images[(rows == row) & (cols == col) & (flips == flipped)]
        assert (group == expected).all(), "not a crop of the zero-padded image"
    return rows, cols, flips


def augmented_draws(kind: str, size: int, padding: int, seed: int = 0, draws: int = DRAWS) -> torch.Tensor:
    """One epoch of ``draws`` augmented copies through the real loader, un-normalised (mean 0, std 1/255)."""
    loader = make_loader(
        coordinate_images(draws, size),
        kind=kind,
        train=True,
        batch_size=500,
        mean=(0.0,) * 3,
        std=(1 / 255,) * 3,
        augmentation=Augmentation(padding, True),
        seed=seed,
        device="cpu",
    )
    return torch.cat([images for images, _ in loader.epoch(0)]).round()


@pytest.mark.parametrize("size, padding", [(32, 4), (16, 2)])
def test_crop_offsets_and_flips_match_torchvision(size: int, padding: int) -> None:
    draws = {kind: recover(augmented_draws(kind, size, padding), padding) for kind in ("tensor", "torchvision")}
    cells = 2 * padding + 1
    joint = {}
    for kind, (rows, cols, flips) in draws.items():
        assert set(rows) == set(range(cells)) and set(cols) == set(range(cells)), kind  # support 0..2p
        joint[kind] = np.bincount(rows * cells + cols, minlength=cells * cells)
        # uniform over the (2p+1)^2 offset pairs, rows and columns independent
        assert stats.chisquare(joint[kind]).pvalue > 1e-3, kind
        assert stats.binomtest(int(flips.sum()), len(flips), 0.5).pvalue > 1e-3, kind
        # the flip is independent of the offset
        table = np.array([np.bincount(rows[flips == f], minlength=cells) for f in (False, True)])
        assert stats.chi2_contingency(table).pvalue > 1e-3, kind
    # and the two paths draw from the same joint distribution
    assert stats.chi2_contingency(np.stack([joint["tensor"], joint["torchvision"]])).pvalue > 1e-3


def test_without_padding_only_flips() -> None:
    loader = make_loader(
        coordinate_images(400, 8),
        kind="tensor",
        train=True,
        batch_size=400,
        mean=(0.0,) * 3,
        std=(1 / 255,) * 3,
        augmentation=Augmentation(0, True),
        seed=1,
        device="cpu",
    )
    rows, cols, flips = recover(next(iter(loader.epoch(0)))[0].round(), padding=0)
    assert set(rows) == {0} and set(cols) == {0} and 0.4 < flips.mean() < 0.6


def test_different_seeds_draw_different_augmentations() -> None:
    first = augmented_draws("tensor", 16, 2, seed=0, draws=100)
    second = augmented_draws("tensor", 16, 2, seed=1, draws=100)
    assert not torch.equal(first, second)
