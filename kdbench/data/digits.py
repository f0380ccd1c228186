"""``digits``: the 1,797 handwritten 8x8 grey images scikit-learn ships (UCI optdigits test set).

Real data with no download, so a newcomer's first command works offline on a laptop CPU. Pixels
0..16 are scaled to 0..255 and the grey channel repeated three times so the CIFAR networks run
unchanged. Split: stratified, 70 % train / 30 % test (1,258 / 539 images), fixed by
``split_seed = 0``; no augmentation (flipped digits are other digits).
"""

from __future__ import annotations

import numpy as np
import torch

from kdbench.data import DATASETS
from kdbench.data.base import Augmentation, DatasetShape, DataSource, Split


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with each class split in the same proportion."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(members) * test_fraction))
        test.extend(members[:n_test])
        train.extend(members[n_test:])
    return np.sort(np.array(train)), np.sort(np.array(test))


@DATASETS.register("digits", aliases=("sklearn-digits",), shape=DatasetShape(10, (3, 8, 8)))
def digits(*, test_fraction: float = 0.3, split_seed: int = 0) -> DataSource:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)  # 0..16 -> 0..255
    images = torch.from_numpy(pixels)[:, None].repeat(1, 3, 1, 1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = stratified_split(bunch.target, test_fraction, split_seed)
    train = Split(images[train_idx], labels[train_idx])
    mean = float(train.images.float().mean() / 255)
    std = float(train.images.float().std() / 255)
    return DataSource(
        name="digits",
        num_classes=10,
        train=train,
        test=Split(images[test_idx], labels[test_idx]),
        mean=(mean,) * 3,
        std=(std,) * 3,
        augmentation=Augmentation(),
    )
