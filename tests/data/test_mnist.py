"""MNIST from small files in the real IDX format (big-endian header, uint8 body), plain and gzipped."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.mnist as torchvision_mnist

from kdbench.data import DataError, dataset_shape, load_dataset
from kdbench.data.grouping import class_names, group_classes
from kdbench.data.mnist import FILES


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format: two zero bytes, type 0x08 (unsigned byte), the rank, big-endian int32 sizes, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, train: int = 12, test: int = 7, packed: set[str] = frozenset(), seed: int = 0) -> dict:
    """``root/MNIST/raw`` with random images and labels; names in ``packed`` are written gzipped."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for split, size in (("train", train), ("t10k", test)):
        arrays[f"{split}-images-idx3-ubyte"] = rng.integers(0, 256, (size, 28, 28), dtype=np.uint8)
        arrays[f"{split}-labels-idx1-ubyte"] = rng.integers(0, 10, size, dtype=np.uint8)
    for name, array in arrays.items():
        if name in packed:
            (raw / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
        else:
            (raw / name).write_bytes(idx_bytes(array))
    return arrays


@pytest.mark.parametrize("packed", [set(), set(FILES), {FILES[0], FILES[3]}], ids=["plain", "gzip", "mixed"])
def test_the_files_load_as_written(tmp_path: Path, packed: set[str]) -> None:
    arrays = write_mnist(tmp_path, packed=packed)
    source = load_dataset("mnist", root=str(tmp_path))
    assert source.train.images.dtype == torch.uint8 and source.train.images.shape == (12, 1, 28, 28)
    assert np.array_equal(source.train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(source.test.images[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert source.train.labels.dtype == torch.int64
    assert source.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert (source.mean, source.std) == ((0.0,), (1.0,))  # the course recipe: pixels / 255 only
    assert source.augmentation.crop_padding == 0 and not source.augmentation.horizontal_flip
    assert class_names(source) == [str(d) for d in range(10)]
    assert dataset_shape({"name": "mnist"}) == (10, tuple(source.train.images.shape[1:]))
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == sorted(
        f"{n}.gz" if n in packed else n for n in FILES
    )  # nothing unpacked into the data folder


def test_root_may_be_the_mnist_folder_and_normalise_uses_exact_statistics(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path)
    source = load_dataset("mnist", root=str(tmp_path / "MNIST"), normalise=True)
    pixels = arrays["train-images-idx3-ubyte"].astype(np.float64) / 255
    assert source.mean[0] == pytest.approx(pixels.mean(), abs=1e-12)
    assert source.std[0] == pytest.approx(pixels.std(), abs=1e-12)


def test_missing_files_are_named_with_where_to_get_them(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / FILES[1]).unlink()
    with pytest.raises(DataError) as raised:
        load_dataset("mnist", root=str(tmp_path))
    message = str(raised.value)
    assert FILES[1] in message and str(tmp_path / "MNIST" / "raw") in message and "download: true" in message
    with pytest.raises(DataError, match="the folder does not exist"):
        load_dataset("mnist", root=str(tmp_path / "elsewhere"))


def test_a_truncated_file_is_a_data_error(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / FILES[0]
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="could not be read|expected 28x28|images but"):
        load_dataset("mnist", root=str(tmp_path))


def test_a_failed_download_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("no network")

    monkeypatch.setattr(torchvision_mnist, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="Could not download MNIST") as raised:
        load_dataset("mnist", root=str(tmp_path), download=True)
    assert "ossci-datasets" in str(raised.value)


def test_grouping_digits_0_4_against_5_9(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path, train=40)
    grouped = group_classes(load_dataset("mnist", root=str(tmp_path)), [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    assert grouped.num_classes == 2 and class_names(grouped) == ["0-4", "5-9"]
    expected = (arrays["train-labels-idx1-ubyte"] >= 5).astype(np.int64)
    assert grouped.train.labels.tolist() == expected.tolist()
    assert np.array_equal(grouped.train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
