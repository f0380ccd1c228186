"""``mnist``: MNIST through torchvision's class, as the course project trains on it.

Files: the four standard IDX files (http://yann.lecun.com/exdb/mnist/, mirrored by torchvision at
https://ossci-datasets.s3.amazonaws.com/mnist/) under ``<root>/MNIST/raw``, as torchvision lays
them out, either unpacked or still gzipped::

    <root>/MNIST/raw/train-images-idx3-ubyte[.gz]   60,000 28x28 grey images
    <root>/MNIST/raw/train-labels-idx1-ubyte[.gz]
    <root>/MNIST/raw/t10k-images-idx3-ubyte[.gz]    10,000 test images
    <root>/MNIST/raw/t10k-labels-idx1-ubyte[.gz]

``root`` may also be the ``MNIST`` folder itself. With ``download: true`` torchvision fetches them
(md5 checked). Otherwise torchvision's own IDX reader parses the files; gzipped ones are unpacked
into a temporary folder first (torchvision reads only unpacked files), never into the data folder.

Recipe (the course project's TensorFlow code): pixels scaled to 0..1 and no other normalisation,
no augmentation, the official 60,000 / 10,000 split. ``normalise: true`` uses the train split's
exact mean and standard deviation instead (the commonly quoted 0.1307 / 0.3081). Images stay one
channel, 28x28: the course models take the data set's shape.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from kdbench.data import DATASETS
from kdbench.data.base import Augmentation, DataError, DatasetShape, Split
from kdbench.data.grouping import NamedDataSource
from kdbench.data.tinyimagenet import channel_statistics
from kdbench.errors import data_root_hint

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CLASS_NAMES = tuple(str(digit) for digit in range(10))
MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def _layout(raw: Path, download: bool = True) -> str:
    """Where the files go and how to get them (``download=False``: a download just failed; not suggested)."""
    return (
        f"MNIST is expected in {raw}/ as the files {', '.join(FILES)} (each may be gzipped, .gz). Download "
        f"them from {MIRROR} (or http://yann.lecun.com/exdb/mnist/) into {raw}/. " + data_root_hint(download)
    )


def _dataset_root(root: Path) -> Path:
    """The folder holding ``MNIST/``: ``root`` itself, or its parent when ``root`` is the ``MNIST`` folder."""
    if root.name == "MNIST" and not (root / "MNIST").is_dir():
        return root.parent
    return root


def _read(root: Path, download: bool) -> tuple[Any, Any]:
    """torchvision's train and test sets, or a DataError naming the folder and what is missing."""
    from torchvision.datasets import MNIST  # seconds to import; planning and reporting never need it

    raw = root / "MNIST" / "raw"
    if download:
        try:
            return MNIST(str(root), train=True, download=True), MNIST(str(root), train=False, download=True)
        except Exception as error:  # network, md5 mismatch, disk: the user needs the same advice
            raise DataError(f"Could not download MNIST into {raw}/: {error}. " + _layout(raw, False)) from error
    missing = [name for name in FILES if not (raw / name).is_file() and not (raw / f"{name}.gz").is_file()]
    if missing:
        found = "the folder does not exist" if not raw.is_dir() else f"missing: {', '.join(missing)}"
        raise DataError(f"MNIST not found ({found}). " + _layout(raw))
    try:
        if all((raw / name).is_file() for name in FILES):
            return MNIST(str(root), train=True), MNIST(str(root), train=False)
        with tempfile.TemporaryDirectory(prefix="kdbench-mnist-") as temporary:
            unpacked = Path(temporary) / "MNIST" / "raw"
            unpacked.mkdir(parents=True)
            for name in FILES:
                if (raw / name).is_file():
                    (unpacked / name).symlink_to((raw / name).resolve())
                else:
                    with gzip.open(raw / f"{name}.gz", "rb") as packed, open(unpacked / name, "wb") as plain:
                        shutil.copyfileobj(packed, plain)
            return MNIST(temporary, train=True), MNIST(temporary, train=False)
    except Exception as error:  # a truncated file or foreign content fails inside torchvision's parser
        raise DataError(
            f"MNIST files in {raw}/ could not be read ({type(error).__name__}: {error}); they may be truncated "
            "or not the IDX files. " + _layout(raw)
        ) from error


def _split(dataset: Any, name: str, raw: Path) -> Split:
    images, labels = dataset.data, dataset.targets
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"MNIST {name} images in {raw}/ are {tuple(images.shape[1:])}, expected 28x28.")
    if len(images) != len(labels):
        raise DataError(f"MNIST {name} split in {raw}/ has {len(images)} images but {len(labels)} labels.")
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) <= 9:
        raise DataError(f"MNIST {name} labels in {raw}/ are outside 0..9 (found {int(labels.max())}).")
    return Split(images[:, None].contiguous(), labels.to(torch.int64))


@DATASETS.register("mnist", aliases=("MNIST",), shape=DatasetShape(num_classes=10, image_shape=(1, 28, 28)))
def mnist(*, root: str = "data", download: bool = False, normalise: bool = False) -> NamedDataSource:
    """MNIST: 60,000 train / 10,000 test 28x28 grey digits, 10 classes."""
    directory = _dataset_root(Path(root).expanduser())
    train_set, test_set = _read(directory, download)
    raw = directory / "MNIST" / "raw"
    train, test = _split(train_set, "train", raw), _split(test_set, "test", raw)
    mean, std = channel_statistics(train.images) if normalise else ((0.0,), (1.0,))
    return NamedDataSource(
        name="mnist",
        num_classes=10,
        train=train,
        test=test,
        mean=mean,
        std=std,
        augmentation=Augmentation(),
        class_names=CLASS_NAMES,
    )
