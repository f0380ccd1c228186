"""``cifar10`` and ``cifar100``: CIFAR through torchvision's classes, with the CRD code's recipe.

Files: the "python version" the authors distribute (http://www.cs.toronto.edu/~kriz/cifar.html),
unpacked under ``root`` as torchvision expects it::

    <root>/cifar-10-batches-py/  data_batch_1 ... data_batch_5, test_batch, batches.meta
    <root>/cifar-100-python/     train, test, meta

``root`` may also be the ``cifar-10-batches-py`` / ``cifar-100-python`` folder itself. With
``download=True`` (``download: true`` in a suite) torchvision fetches and unpacks the archive there.

Recipe (RepDistiller ``dataset/cifar100.py``): random crop 32 after zero padding 4, horizontal flip,
normalisation by the per-pixel mean and standard deviation of the train split. CIFAR-100 uses the CRD
code's constants. The CRD code has no CIFAR-10; we use the same convention, the per-pixel statistics
of the CIFAR-10 train split, (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616), not the often
copied std (0.2023, 0.1994, 0.2010), which is a mean of per-image standard deviations.

Integrity: torchvision compares every file's md5 with the published one before loading. Without
``download`` we check instead that every file is present and that its content is consistent
(32x32x3 images, one label per image, labels in range): the unpickling and reshaping are
torchvision's own, so the published files load exactly as through the stock classes, and small
files written in the same format (the tests') load through the same code. With ``download=True``
the stock classes run, md5 checks included, since that check is what decides whether to fetch.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench.data import DATASETS
from kdbench.data.base import Augmentation, DataError, DatasetShape, DataSource, Split
from kdbench.errors import data_root_hint

CIFAR_PAGE = "http://www.cs.toronto.edu/~kriz/cifar.html"

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)  # the CRD code's constants
CIFAR100_STD = (0.2675, 0.2565, 0.2761)


class _PresenceChecked:
    """Replaces torchvision's md5 checks with a presence check (see the module docstring)."""

    base_folder: str
    root: str
    train_list: list[list[str]]
    test_list: list[list[str]]
    meta: dict[str, str]

    def _check_integrity(self) -> bool:
        folder = os.path.join(self.root, self.base_folder)
        names = [name for name, _ in self.train_list + self.test_list]
        return all(os.path.isfile(os.path.join(folder, name)) for name in names)

    def _load_meta(self) -> None:
        with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as file:
            self.classes = pickle.load(file, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}


def expected_files(stock: Any) -> list[str]:
    """The file names torchvision reads for one variant, in its folder."""
    return [name for name, _ in stock.train_list + stock.test_list] + [stock.meta["filename"]]


def _resolve_root(root: Path, folder: str) -> Path:
    """The directory holding ``folder``: ``root`` itself, or its parent when ``root`` is that folder."""
    if root.name == folder and not (root / folder).is_dir():
        return root.parent
    return root


def _layout_help(title: str, stock: Any, root: Path, download: bool = True) -> str:
    """Where the files go and how to get them (``download=False``: a download just failed; not suggested)."""
    return (
        f"{title} is expected in {root / stock.base_folder}/ with the files "
        f"{', '.join(expected_files(stock))}. Get the python version ({stock.filename}) from {CIFAR_PAGE} "
        f"({stock.url}) and unpack it into {root}/. " + data_root_hint(download)
    )


def _split(images: np.ndarray, targets: list[int]) -> Split:
    return Split(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(targets, dtype=torch.int64))


@cache
def _torchvision_classes(class_name: str) -> tuple[Any, Any]:
    """torchvision's class and our presence-checked subclass of it; imported on first use only
    (torchvision takes seconds to import, and planning or reporting never needs it)."""
    from torchvision import datasets

    stock = getattr(datasets, class_name)
    return stock, type(f"_{class_name}Files", (_PresenceChecked, stock), {})


@dataclass(frozen=True)
class Variant:
    """One CIFAR data set: its names, torchvision's class (by name), its statistics."""

    name: str
    title: str
    class_name: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def stock(self) -> Any:
        return _torchvision_classes(self.class_name)[0]

    @property
    def checked(self) -> Any:
        return _torchvision_classes(self.class_name)[1]


CIFAR10 = Variant("cifar10", "CIFAR-10", "CIFAR10", 10, CIFAR10_MEAN, CIFAR10_STD)
CIFAR100 = Variant("cifar100", "CIFAR-100", "CIFAR100", 100, CIFAR100_MEAN, CIFAR100_STD)


def _read(variant: Variant, root: str, download: bool) -> tuple[Any, Any, Path]:
    """torchvision's train and test sets, or a DataError that says what is missing and how to get it."""
    title, stock = variant.title, variant.stock
    directory = _resolve_root(Path(root).expanduser(), stock.base_folder)
    if download:
        try:
            return stock(str(directory), train=True, download=True), stock(str(directory), train=False), directory
        except Exception as error:  # network, md5 mismatch, disk: all end the same way for the user
            raise DataError(
                f"Could not download {title} into {directory}/: {error}. "
                + _layout_help(title, stock, directory, download=False)
            ) from error
    folder = directory / stock.base_folder
    missing = [name for name in expected_files(stock) if not (folder / name).is_file()]
    if missing:
        found = "the folder does not exist" if not folder.is_dir() else f"missing: {', '.join(missing)}"
        raise DataError(f"{title} not found ({found}). " + _layout_help(title, stock, directory))
    try:
        return variant.checked(str(directory), train=True), variant.checked(str(directory), train=False), directory
    except Exception as error:  # a truncated or foreign pickle fails in many ways; name the folder
        raise DataError(
            f"{title} files in {folder}/ could not be read ({type(error).__name__}: {error}). "
            "They may be truncated or not the python version; " + _layout_help(title, stock, directory)
        ) from error


def load_cifar(variant: Variant, root: str, download: bool) -> DataSource:
    """The data set as uint8 NCHW splits with int64 labels, checked for consistency."""
    train_set, test_set, directory = _read(variant, root, download)
    folder = directory / variant.stock.base_folder
    splits = []
    for name, dataset in (("train", train_set), ("test", test_set)):
        if len(dataset.targets) != len(dataset.data):
            raise DataError(
                f"{variant.title} {name} split in {folder}/ has {len(dataset.data)} images "
                f"but {len(dataset.targets)} labels."
            )
        bad = [label for label in dataset.targets if not 0 <= label < variant.num_classes]
        if bad:
            raise DataError(
                f"{variant.title} {name} split in {folder}/ has labels outside 0..{variant.num_classes - 1}, "
                f"for example {bad[0]}: is it the right variant?"
            )
        splits.append(_split(dataset.data, dataset.targets))
    return DataSource(
        name=variant.name,
        num_classes=variant.num_classes,
        train=splits[0],
        test=splits[1],
        mean=variant.mean,
        std=variant.std,
        augmentation=Augmentation(crop_padding=4, horizontal_flip=True),
    )


@DATASETS.register("cifar10", aliases=("CIFAR-10",), shape=DatasetShape(10, (3, 32, 32)))
def cifar10(*, root: str = "data", download: bool = False) -> DataSource:
    """CIFAR-10: 50,000 train / 10,000 test 32x32 images, 10 classes."""
    return load_cifar(CIFAR10, root, download)


@DATASETS.register("cifar100", aliases=("CIFAR-100",), shape=DatasetShape(100, (3, 32, 32)))
def cifar100(*, root: str = "data", download: bool = False) -> DataSource:
    """CIFAR-100: 50,000 train / 10,000 test 32x32 images, 100 (fine) classes."""
    return load_cifar(CIFAR100, root, download)
