"""The fast data path on CUDA: the crops and flips of the CPU path's distribution, every image once an epoch.

On CUDA the tensor loader draws its order and augmentation on the GPU (other numbers than on the CPU,
same distribution), so the two are compared as distributions: offsets uniform over the (2p+1)^2
cells, flips fair and independent of the offset, and the CUDA draws indistinguishable from the CPU's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from kdbench.data.base import Augmentation, Split
from kdbench.data.loaders import make_loader
from tests.data.test_augmentation import coordinate_images, recover
from tests.gpu.cuda_helpers import CUDA_ONLY

pytestmark = CUDA_ONLY

DRAWS = 4000


def augmented(device: str, size: int, padding: int, seed: int = 0) -> torch.Tensor:
    """One epoch of ``DRAWS`` augmented copies, un-normalised (mean 0, std 1/255), back on the CPU."""
    loader = make_loader(
        coordinate_images(DRAWS, size),
        kind="tensor",
        train=True,
        batch_size=500,
        mean=(0.0,) * 3,
        std=(1 / 255,) * 3,
        augmentation=Augmentation(padding, True),
        seed=seed,
        device=device,
    )
    batches = [batch[0] for batch in loader.epoch(0)]
    assert all(images.device.type == torch.device(device).type for images in batches)
    return torch.cat(batches).cpu().round()


@pytest.mark.parametrize("size, padding", [(32, 4), (16, 2)])
def test_cuda_crops_and_flips_draw_the_cpu_distribution(size: int, padding: int) -> None:
    cells = 2 * padding + 1
    joint = {}
    for device in ("cuda", "cpu"):
        rows, cols, flips = recover(augmented(device, size, padding), padding)  # each image a true crop
        assert set(rows) == set(range(cells)) and set(cols) == set(range(cells)), device
        joint[device] = np.bincount(rows * cells + cols, minlength=cells * cells)
        assert stats.chisquare(joint[device]).pvalue > 1e-3, device
        assert stats.binomtest(int(flips.sum()), len(flips), 0.5).pvalue > 1e-3, device
        table = np.array([np.bincount(rows[flips == f], minlength=cells) for f in (False, True)])
        assert stats.chi2_contingency(table).pvalue > 1e-3, device
    assert stats.chi2_contingency(np.stack([joint["cuda"], joint["cpu"]])).pvalue > 1e-3


@pytest.mark.parametrize("train", [True, False])
def test_every_image_once_per_epoch_on_cuda_with_the_last_partial_batch(train: bool) -> None:
    count = 37
    images = torch.randint(0, 256, (count, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    loader = make_loader(
        Split(images, torch.arange(count)),  # the label of an image is its index
        kind="tensor",
        train=train,
        batch_size=8,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        augmentation=Augmentation(crop_padding=2, horizontal_flip=True),
        seed=0,
        device="cuda",
        channels_last=True,
    )
    orders = []
    for epoch in range(2):
        sizes, seen = [], []
        for batch in loader.epoch(epoch):
            images, labels = batch[0], batch[1]
            assert images.is_cuda and labels.is_cuda and images.dtype == torch.float32
            assert images.is_contiguous(memory_format=torch.channels_last)
            sizes.append(len(labels))
            seen += labels.tolist()
        assert sizes == [8, 8, 8, 8, 5]
        assert sorted(seen) == list(range(count))
        orders.append(seen)
    if train:
        assert orders[0] != orders[1]  # a new order each epoch
    else:
        assert orders[0] == orders[1] == list(range(count))
