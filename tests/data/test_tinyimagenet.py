"""Tiny-ImageNet from a small tree in the release's layout, with real JPEGs and val_annotations.txt."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.utils as torchvision_utils
from PIL import Image

import kdbench.data.tinyimagenet as tiny
from kdbench.data import DataError, load_dataset

WNIDS = ["n03444034", "n01443537", "n02124075"]  # unsorted on purpose: labels follow sorted order
TRAIN_PER_CLASS, VAL_PER_CLASS = 3, 2


def colour(wnid: str, split: str, index: int) -> tuple[int, int, int]:
    """A flat colour unique to one image, far enough from the others to survive JPEG."""
    label = sorted(WNIDS).index(wnid)
    return (20 + 70 * label, 20 + 60 * index, 200 if split == "train" else 60)


def write_tree(root: Path, grey_train_image: bool = True) -> Path:
    """``root/tiny-imagenet-200`` with a few classes; val images listed in an order mixing classes."""
    directory = root / "tiny-imagenet-200"
    (directory / "val" / "images").mkdir(parents=True)
    (directory / "wnids.txt").write_text("".join(f"{wnid}\n" for wnid in WNIDS))
    (directory / "words.txt").write_text("".join(f"{wnid}\tthing {i}\n" for i, wnid in enumerate(WNIDS)))
    for wnid in WNIDS:
        images = directory / "train" / wnid / "images"
        images.mkdir(parents=True)
        for index in range(TRAIN_PER_CLASS):
            Image.new("RGB", (64, 64), colour(wnid, "train", index)).save(images / f"{wnid}_{index}.JPEG")
        (directory / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    if grey_train_image:
        Image.new("L", (64, 64), 128).save(directory / "train" / WNIDS[0] / "images" / f"{WNIDS[0]}_grey.JPEG")
    lines = []
    for number in range(VAL_PER_CLASS * len(WNIDS)):
        wnid, index = WNIDS[number % len(WNIDS)], number // len(WNIDS)
        Image.new("RGB", (64, 64), colour(wnid, "val", index)).save(directory / "val" / "images" / f"val_{number}.JPEG")
        lines.append(f"val_{number}.JPEG\t{wnid}\t0\t3\t60\t61\n")
    (directory / "val" / "val_annotations.txt").write_text("".join(lines))
    (directory / "test" / "images").mkdir(parents=True)  # unlabelled in the release: never read
    Image.new("RGB", (64, 64), (1, 2, 3)).save(directory / "test" / "images" / "test_0.JPEG")
    return directory


def expected_val() -> tuple[list[int], list[tuple[int, int, int]]]:
    labels, colours = [], []
    for number in range(VAL_PER_CLASS * len(WNIDS)):
        wnid, index = WNIDS[number % len(WNIDS)], number // len(WNIDS)
        labels.append(sorted(WNIDS).index(wnid))
        colours.append(colour(wnid, "val", index))
    return labels, colours


def assert_colours(images: torch.Tensor, colours: list[tuple[int, int, int]]) -> None:
    measured = images.float().mean(dim=(2, 3))
    assert torch.allclose(measured, torch.tensor(colours, dtype=torch.float32), atol=3)


def test_loads_the_release_layout_in_place(tmp_path: Path) -> None:
    write_tree(tmp_path)
    data = load_dataset("Tiny-ImageNet", root=str(tmp_path))
    assert data.name == "tinyimagenet" and data.num_classes == 3
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape == (3 * TRAIN_PER_CLASS + 1, 3, 64, 64)
    # train: classes in sorted wnid order, files in name order within a class
    expected_train = []
    for wnid in sorted(WNIDS):
        names = sorted(
            [f"{wnid}_{i}.JPEG" for i in range(TRAIN_PER_CLASS)] + ([f"{wnid}_grey.JPEG"] if wnid == WNIDS[0] else [])
        )
        expected_train += [(sorted(WNIDS).index(wnid), name) for name in names]
    assert data.train.labels.tolist() == [label for label, _ in expected_train]
    grey_position = [name for _, name in expected_train].index(f"{WNIDS[0]}_grey.JPEG")
    grey = data.train.images[grey_position].float()
    assert torch.allclose(grey, torch.full_like(grey, 128), atol=2)  # grey JPEG -> three equal channels
    colours = [
        colour(
            WNIDS[0] if "grey" in name else name.split("_")[0],
            "train",
            0 if "grey" in name else int(name.split("_")[1].split(".")[0]),
        )
        for _, name in expected_train
    ]
    keep = [i for i in range(len(colours)) if i != grey_position]
    assert_colours(data.train.images[keep], [colours[i] for i in keep])
    # test = val, labelled from val_annotations.txt
    labels, val_colours = expected_val()
    assert data.test.labels.tolist() == labels
    assert_colours(data.test.images, val_colours)
    assert (data.augmentation.crop_padding, data.augmentation.horizontal_flip) == (8, True)


def test_normalisation_is_the_train_splits_per_channel_statistics(tmp_path: Path) -> None:
    write_tree(tmp_path)
    data = load_dataset("tinyimagenet", root=str(tmp_path))
    pixels = data.train.images.double() / 255
    expected_mean = pixels.mean(dim=(0, 2, 3))
    expected_std = pixels.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False)
    assert torch.allclose(torch.tensor(data.mean, dtype=torch.float64), expected_mean, atol=1e-9)
    assert torch.allclose(torch.tensor(data.std, dtype=torch.float64), expected_std, atol=1e-9)


def test_root_may_be_the_dataset_folder_and_the_cache_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = write_tree(tmp_path)
    first = load_dataset("tiny-imagenet-200", root=str(directory))
    caches = list(directory.glob(".kdbench-cache-*.pt"))
    assert len(caches) == 1 and not list(directory.glob("*.tmp"))

    def no_decoding(path: Path) -> np.ndarray:
        raise AssertionError(f"decoded {path} although the cache matches")

    monkeypatch.setattr(tiny, "_decode", no_decoding)
    second = load_dataset("tinyimagenet", root=str(tmp_path))
    assert torch.equal(first.train.images, second.train.images) and torch.equal(first.test.labels, second.test.labels)
    assert (first.mean, first.std) == (second.mean, second.std)

    # a changed tree gets a new key, so it is decoded again (and fails here, through the patched decoder)
    Image.new("RGB", (64, 64), (9, 9, 9)).save(directory / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_new.JPEG")
    with pytest.raises(AssertionError, match="decoded"):
        load_dataset("tinyimagenet", root=str(tmp_path))


def test_cache_dir_is_used_instead_of_the_data_folder(tmp_path: Path) -> None:
    directory = write_tree(tmp_path / "data")
    load_dataset("tinyimagenet", root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    assert len(list((tmp_path / "cache").glob(".kdbench-cache-*.pt"))) == 1
    assert not list(directory.glob(".kdbench-cache-*"))


def test_reorganised_val_folders_are_still_labelled_from_the_annotations(tmp_path: Path) -> None:
    directory = write_tree(tmp_path)
    for line in (directory / "val" / "val_annotations.txt").read_text().splitlines():
        name, wnid = line.split("\t")[:2]
        (directory / "val" / wnid / "images").mkdir(parents=True, exist_ok=True)
        shutil.move(directory / "val" / "images" / name, directory / "val" / wnid / "images" / name)
    data = load_dataset("tinyimagenet", root=str(tmp_path))
    labels, val_colours = expected_val()
    assert data.test.labels.tolist() == labels
    assert_colours(data.test.images, val_colours)


def test_missing_data_names_the_path_and_the_url(tmp_path: Path) -> None:
    with pytest.raises(DataError) as raised:
        load_dataset("tinyimagenet", root=str(tmp_path))
    message = str(raised.value)
    assert str(tmp_path / "tiny-imagenet-200" / "wnids.txt") in message
    assert "http://cs231n.stanford.edu/tiny-imagenet-200.zip" in message
    assert "val/val_annotations.txt" in message


def test_pointing_at_the_raw_val_folder_is_refused(tmp_path: Path) -> None:
    directory = write_tree(tmp_path)
    with pytest.raises(DataError, match="Tiny-ImageNet not found"):
        load_dataset("tinyimagenet", root=str(directory / "val"))


def test_missing_annotations_are_refused_not_guessed(tmp_path: Path) -> None:
    directory = write_tree(tmp_path)
    (directory / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataError, match="val_annotations.txt is missing"):
        load_dataset("tinyimagenet", root=str(tmp_path))


def test_a_listed_val_image_that_is_missing_is_named(tmp_path: Path) -> None:
    directory = write_tree(tmp_path)
    (directory / "val" / "images" / "val_4.JPEG").unlink()
    with pytest.raises(DataError) as raised:
        load_dataset("tinyimagenet", root=str(tmp_path))
    assert str(directory / "val" / "images" / "val_4.JPEG") in str(raised.value)


def test_an_unknown_wnid_in_the_annotations_is_named(tmp_path: Path) -> None:
    directory = write_tree(tmp_path)
    annotations = directory / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text().replace(WNIDS[2], "n99999999", 1))
    with pytest.raises(DataError, match="'n99999999' is not in wnids.txt"):
        load_dataset("tinyimagenet", root=str(tmp_path))


def test_a_class_without_val_images_is_refused(tmp_path: Path) -> None:
    directory = write_tree(tmp_path)
    annotations = directory / "val" / "val_annotations.txt"
    annotations.write_text(
        "".join(line + "\n" for line in annotations.read_text().splitlines() if WNIDS[1] not in line)
    )
    with pytest.raises(DataError, match=f"val: {WNIDS[1]} has no images"):
        load_dataset("tinyimagenet", root=str(tmp_path))


def test_a_missing_train_class_folder_is_named(tmp_path: Path) -> None:
    directory = write_tree(tmp_path)
    shutil.rmtree(directory / "train" / WNIDS[2])
    with pytest.raises(DataError) as raised:
        load_dataset("tinyimagenet", root=str(tmp_path))
    assert str(directory / "train" / WNIDS[2] / "images") in str(raised.value)


def test_the_full_release_must_have_its_counts(tmp_path: Path) -> None:
    """200 wnids means the release: 500 train and 50 val images a class, so a partial unzip is caught."""
    wnids = [f"n{i:08d}" for i in range(200)]
    listing = tiny.Listing(
        tmp_path,
        wnids,
        train=[(tmp_path, i % 200, 1) for i in range(200 * 500 - 1)],
        val=[(tmp_path, i % 200, 1) for i in range(200 * 50)],
    )
    with pytest.raises(DataError, match=r"train: n00000199 has 499 of 500 images"):
        tiny._check_counts(listing)
    complete = tiny.Listing(tmp_path, wnids, train=listing.train + [(tmp_path, 199, 1)], val=listing.val)
    tiny._check_counts(complete)


def test_a_corrupt_jpeg_is_named(tmp_path: Path) -> None:
    directory = write_tree(tmp_path)
    broken = directory / "train" / WNIDS[0] / "images" / f"{WNIDS[0]}_1.JPEG"
    broken.write_bytes(broken.read_bytes()[:50])
    with pytest.raises(DataError) as raised:
        load_dataset("tinyimagenet", root=str(tmp_path))
    assert str(broken) in str(raised.value)


def test_download_fetches_the_zip_into_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_download(url: str, download_root: str, **kwargs: object) -> None:
        calls.append((url, download_root))
        write_tree(Path(download_root))

    monkeypatch.setattr(torchvision_utils, "download_and_extract_archive", fake_download)
    data = load_dataset("tinyimagenet", root=str(tmp_path), download=True)
    assert calls == [("http://cs231n.stanford.edu/tiny-imagenet-200.zip", str(tmp_path))]
    assert data.num_classes == 3
    load_dataset("tinyimagenet", root=str(tmp_path), download=True)
    assert len(calls) == 1  # present data is not fetched again
