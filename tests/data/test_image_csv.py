"""image_csv on a generated folder of real PNG files with an MHIST-style annotations.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import kdbench.data.image_csv as image_csv_module
from kdbench.data import DataError, dataset_shape, load_dataset
from kdbench.data.grouping import class_names
from kdbench.data.image_csv import IMAGENET_MEAN, IMAGENET_STD

HEADER = ["Image Name", "Majority Vote Label", "Number of Annotators who Selected SSA (Out of 7)", "Partition"]


def write_folder(
    directory: Path, rows: list[tuple[str, str, str]], size: tuple[int, int] = (16, 16), seed: int = 0
) -> dict[str, np.ndarray]:
    """images/<name>.png (random RGB) and annotations.csv with MHIST's columns; returns the pixels written."""
    rng = np.random.default_rng(seed)
    (directory / "images").mkdir(parents=True)
    pixels = {}
    with open(directory / "annotations.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(HEADER)
        for name, label, split in rows:
            array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(array).save(directory / "images" / name)
            pixels[name] = array
            writer.writerow([name, label, "3", split])
    return pixels


ROWS = [
    ("MHIST_a.png", "SSA", "train"),
    ("MHIST_b.png", "HP", "train"),
    ("MHIST_c.png", "HP", "test"),
    ("MHIST_d.png", "HP", "train"),
    ("MHIST_e.png", "SSA", "test"),
]


def test_mhist_layout_loads_with_labels_splits_and_names(tmp_path: Path) -> None:
    pixels = write_folder(tmp_path / "mhist", ROWS)
    source = load_dataset("image_csv", root=str(tmp_path), image_size=16, augmentation=["flip"])
    assert source.num_classes == 2 and class_names(source) == ["HP", "SSA"]
    assert source.train.labels.tolist() == [1, 0, 0] and source.test.labels.tolist() == [0, 1]
    assert source.train.images.dtype == torch.uint8 and source.train.images.shape == (3, 3, 16, 16)
    assert np.array_equal(source.train.images[0].permute(1, 2, 0).numpy(), pixels["MHIST_a.png"])
    assert np.array_equal(source.test.images[1].permute(1, 2, 0).numpy(), pixels["MHIST_e.png"])
    assert (source.mean, source.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert source.augmentation.horizontal_flip and source.augmentation.crop_padding == 0
    assert dataset_shape({"name": "image_csv", "image_size": 16}) == (2, (3, 16, 16))
    assert dataset_shape({"name": "mhist"}) == (2, (3, 224, 224))


def test_other_sizes_are_resized_on_the_shorter_side_and_centre_cropped(tmp_path: Path) -> None:
    pixels = write_folder(tmp_path / "mhist", ROWS, size=(12, 8))
    source = load_dataset("image_csv", root=str(tmp_path), image_size=4)
    expected = Image.fromarray(pixels["MHIST_a.png"]).resize((6, 4), Image.Resampling.BILINEAR).crop((1, 0, 5, 4))
    assert np.array_equal(source.train.images[0].permute(1, 2, 0).numpy(), np.array(expected))


def test_normalisation_from_the_train_split(tmp_path: Path) -> None:
    pixels = write_folder(tmp_path / "mhist", ROWS)
    source = load_dataset("image_csv", root=str(tmp_path), image_size=16, normalisation="train")
    train = np.stack([pixels[n] for n, _, split in ROWS if split == "train"]).astype(np.float64) / 255
    np.testing.assert_allclose(source.mean, train.mean(axis=(0, 1, 2)), atol=1e-12)
    np.testing.assert_allclose(source.std, train.std(axis=(0, 1, 2)), atol=1e-12)


def test_other_columns_and_a_stratified_split_without_a_split_column(tmp_path: Path) -> None:
    folder = tmp_path / "cells"
    (folder / "pictures").mkdir(parents=True)
    rows = [(f"{i}.png", ["a", "b", "c"][i % 3]) for i in range(30)]
    for name, _ in rows:
        Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(folder / "pictures" / name)
    (folder / "labels.csv").write_text("file,kind\n" + "".join(f"{n},{k}\n" for n, k in rows))
    source = load_dataset(
        "image_csv",
        root=str(tmp_path),
        folder="cells",
        images="pictures",
        annotations="labels.csv",
        file_column="file",
        label_column="kind",
        split_column=None,
        classes=["a", "b", "c"],
        image_size=8,
        test_fraction=0.2,
    )
    assert source.num_classes == 3
    assert torch.bincount(source.test.labels).tolist() == [2, 2, 2]  # 20 % of each class
    assert torch.bincount(source.train.labels).tolist() == [8, 8, 8]


def test_the_cache_is_used_and_keyed_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_folder(tmp_path / "mhist", ROWS)
    first = load_dataset("image_csv", root=str(tmp_path), image_size=16)
    assert len(list((tmp_path / "mhist").glob(".kdbench-cache-*.pt"))) == 1

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(image_csv_module, "decode", no_decoding)
    again = load_dataset("image_csv", root=str(tmp_path), image_size=16)
    assert torch.equal(first.train.images, again.train.images)
    monkeypatch.undo()

    changed = np.zeros((16, 16, 3), np.uint8)
    Image.fromarray(changed).save(tmp_path / "mhist" / "images" / "MHIST_a.png")  # same name, new content
    reloaded = load_dataset("image_csv", root=str(tmp_path), image_size=16)
    assert int(reloaded.train.images[0].sum()) == 0
    assert len(list((tmp_path / "mhist").glob(".kdbench-cache-*.pt"))) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: (d / "annotations.csv").unlink(), "annotations.csv not found.*bmirds"),
        (lambda d: (d / "images" / "MHIST_c.png").unlink(), "line 4: .*MHIST_c.png is missing"),
        (
            lambda d: (d / "annotations.csv").write_text((d / "annotations.csv").read_text().replace("SSA,3", "TA,3")),
            "label 'TA' is not one of HP, SSA",
        ),
        (
            lambda d: (d / "annotations.csv").write_text(
                (d / "annotations.csv").read_text().replace("Partition", "Set")
            ),
            "no column 'Partition'; its columns are .*'Set'",
        ),
        (
            lambda d: (d / "annotations.csv").write_text((d / "annotations.csv").read_text().replace(",test", ",val")),
            "split 'val' is neither 'train' nor 'test'",
        ),
        (lambda d: (d / "images" / "MHIST_b.png").write_bytes(b"not a png"), "cannot decode .*MHIST_b.png"),
    ],
)
def test_problems_are_data_errors_naming_the_line_or_file(tmp_path: Path, change, message: str) -> None:
    write_folder(tmp_path / "mhist", ROWS)
    change(tmp_path / "mhist")
    with pytest.raises(DataError, match=message):
        load_dataset("image_csv", root=str(tmp_path), image_size=16)


@pytest.mark.parametrize(
    ("option", "message"),
    [({"normalisation": "z"}, "normalisation 'z'"), ({"augmentation": ["rotate"]}, "augmentation must be a list")],
)
def test_bad_options_are_named(tmp_path: Path, option: dict, message: str) -> None:
    write_folder(tmp_path / "mhist", ROWS)
    with pytest.raises(DataError, match=message):
        load_dataset("image_csv", root=str(tmp_path), image_size=16, **option)
