"""CIFAR-10/100 from tiny files in the real on-disk format (the python version's pickled batches)."""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as torchvision_cifar

from kdbench.data import DataError, load_dataset
from kdbench.data.cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD

CIFAR10_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]


def _dump(path: Path, content: dict) -> None:
    with open(path, "wb") as file:
        pickle.dump(content, file, protocol=2)  # the release was pickled by Python 2


def write_cifar10(root: Path, per_batch: int = 3, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    """cifar-10-batches-py/ with 5 train batches and a test batch of random images; returns what it wrote."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in CIFAR10_FILES:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)  # rows: 1024 red, 1024 green, 1024 blue
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        _dump(
            folder / name,
            {
                "batch_label": f"{name} of 5",
                "labels": labels,
                "data": data,
                "filenames": [f"img_{i}.png" for i in range(per_batch)],
            },
        )
        written[name] = (data, labels)
    _dump(
        folder / "batches.meta",
        {"num_cases_per_batch": per_batch, "num_vis": 3072, "label_names": [f"class{i}" for i in range(10)]},
    )
    return written


def write_cifar100(root: Path, train_size: int = 7, test_size: int = 5, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    written = {}
    for name, size in (("train", train_size), ("test", test_size)):
        data = rng.integers(0, 256, (size, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, size)]
        _dump(
            folder / name,
            {
                "filenames": [f"{i}.png" for i in range(size)],
                "batch_label": name,
                "fine_labels": fine,
                "coarse_labels": [v // 5 for v in fine],
                "data": data,
            },
        )
        written[name] = (data, fine)
    _dump(
        folder / "meta",
        {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": [f"coarse{i}" for i in range(20)]},
    )
    return written


def test_cifar10_loads_the_pickled_batches_as_uint8_nchw(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path)
    data = load_dataset("CIFAR-10", root=str(tmp_path))
    train_rows = np.concatenate([written[name][0] for name in CIFAR10_FILES[:5]])
    train_labels = sum((written[name][1] for name in CIFAR10_FILES[:5]), [])
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape == (15, 3, 32, 32)
    assert torch.equal(data.train.images, torch.from_numpy(train_rows.reshape(15, 3, 32, 32)))
    assert data.train.labels.tolist() == train_labels and data.train.labels.dtype == torch.int64
    assert torch.equal(data.test.images, torch.from_numpy(written["test_batch"][0].reshape(3, 3, 32, 32)))
    assert data.test.labels.tolist() == written["test_batch"][1]
    assert (data.name, data.num_classes, data.mean, data.std) == ("cifar10", 10, CIFAR10_MEAN, CIFAR10_STD)
    assert (data.augmentation.crop_padding, data.augmentation.horizontal_flip) == (4, True)


def test_cifar100_loads_fine_labels_with_the_crd_constants(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path)
    data = load_dataset("CIFAR-100", root=str(tmp_path))
    assert torch.equal(data.train.images, torch.from_numpy(written["train"][0].reshape(7, 3, 32, 32)))
    assert data.train.labels.tolist() == written["train"][1]
    assert data.test.labels.tolist() == written["test"][1]
    assert data.num_classes == 100
    assert data.mean == (0.5071, 0.4867, 0.4408) and data.std == (0.2675, 0.2565, 0.2761)
    assert (CIFAR100_MEAN, CIFAR100_STD) == (data.mean, data.std)


def test_root_may_be_the_batches_folder_itself(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    data = load_dataset("cifar10", root=str(tmp_path / "cifar-10-batches-py"))
    assert len(data.train) == 15 and len(data.test) == 3


def test_same_arrays_as_torchvisions_stock_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the md5 check differs from torchvision: with it switched off, the stock class reads the same."""
    write_cifar100(tmp_path)
    monkeypatch.setattr(torchvision_cifar, "check_integrity", lambda *args, **kwargs: True)
    stock = torchvision_cifar.CIFAR100(str(tmp_path), train=True)
    ours = load_dataset("cifar100", root=str(tmp_path))
    assert torch.equal(ours.train.images.permute(0, 2, 3, 1), torch.from_numpy(stock.data))
    assert ours.train.labels.tolist() == stock.targets


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_data_names_the_path_the_url_and_download(tmp_path: Path, name: str, folder: str) -> None:
    with pytest.raises(DataError) as raised:
        load_dataset(name, root=str(tmp_path / "nowhere"))
    message = str(raised.value)
    assert str(tmp_path / "nowhere" / folder) in message
    assert "http://www.cs.toronto.edu/~kriz/cifar.html" in message
    assert "download: true" in message


def test_a_missing_batch_is_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing: data_batch_3"):
        load_dataset("cifar10", root=str(tmp_path))


def test_a_truncated_batch_is_a_data_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(DataError, match="could not be read") as raised:
        load_dataset("cifar10", root=str(tmp_path))
    assert str(tmp_path / "cifar-10-batches-py") in str(raised.value)


def test_cifar100_files_under_the_cifar10_name_fail_on_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(tmp_path)
    content = pickle.loads((folder / "test_batch").read_bytes(), encoding="latin1")
    _dump(folder / "test_batch", {**content, "labels": [50] * len(content["labels"])})
    with pytest.raises(DataError, match="labels outside 0..9"):
        load_dataset("cifar10", root=str(tmp_path))


def test_a_failed_download_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def offline(url: str, *args: object, **kwargs: object) -> None:
        calls.append(url)
        raise URLError("no network")

    monkeypatch.setattr(torchvision_cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="Could not download CIFAR-10") as raised:
        load_dataset("cifar10", root=str(tmp_path), download=True)
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert "no network" in str(raised.value) and str(tmp_path) in str(raised.value)
