"""``image_csv``: a folder of images plus a CSV of labels (the MHIST layout by default).

Layout, ``folder`` relative to the data root (or absolute)::

    <root>/<folder>/<images>/<file>        one image per CSV row (PNG, JPEG, anything PIL reads)
    <root>/<folder>/<annotations>          a CSV with a header row

with a column naming each image (``file_column``), one with its class (``label_column``) and,
optionally, one with its split (``split_column``: ``train_split`` / ``test_split`` values). Without a
split column the test split is a stratified ``test_fraction`` of the rows, fixed by ``split_seed``.
The defaults are MHIST's (https://bmirds.github.io/MHIST/: ``images.zip`` unpacked to ``images/``
beside ``annotations.csv``, whose columns are ``Image Name``, ``Majority Vote Label`` (HP or SSA)
and ``Partition`` (train or test); 2,175 train and 977 test 224x224 RGB images). ``classes`` lists
the label values in class-index order (default MHIST's ``[HP, SSA]``); they are the class names of
the reports. A label outside them, a missing image or an unknown split value is an error naming the
CSV line.

Images: RGB; an image of another size is resized so that its shorter side is ``image_size`` and
centre-cropped to a square (torchvision's ``Resize`` + ``CenterCrop``, bilinear with antialiasing).
Normalisation (``normalisation``): ``imagenet`` (default: the ImageNet statistics every torchvision
pretrained backbone expects; the course project's MHIST code left it out, a flaw its write-up names),
``train`` (the train split's own per-channel statistics) or ``none`` (pixels / 255). Train
augmentation (``augmentation``): a list naming ``flip`` (horizontal flip, p = 0.5) and/or
``crop`` (random crop of the same size after zero padding ``image_size // 8``) or
``random_resized_crop`` (torchvision's ``RandomResizedCrop`` to ``image_size``: scale 0.08-1, aspect
3/4-4/3, the ImageNet training crop of pretrained backbones); none by default.

Decoding thousands of PNGs takes a while, so the decoded uint8 tensors are cached once, atomically,
as ``.kdbench-cache-<key>.pt`` in the data folder (or ``cache_dir``; ``~/.cache/kdbench`` when the
folder is read-only). The key hashes every image file's content with its name, label and split, the
image size and the cache format: a changed file, label or size decodes again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from kdbench.data import DATASETS
from kdbench.data.base import Augmentation, DataError, DatasetShape, Split
from kdbench.data.digits import stratified_split
from kdbench.data.grouping import NamedDataSource
from kdbench.data.tinyimagenet import channel_statistics
from kdbench.errors import data_root_hint
from kdbench.results.store import atomic_write_bytes

MHIST_CLASSES = ("HP", "SSA")
MHIST_PAGE = "https://bmirds.github.io/MHIST/"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's pretrained weights' preprocessing
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALISATIONS = ("imagenet", "train", "none")
AUGMENTATIONS = ("flip", "crop", "random_resized_crop")
CACHE_FORMAT = 1  # bump when the cached content changes meaning


@dataclass(frozen=True)
class Entry:
    """One CSV row: the image file, its class index and whether it is a test image."""

    path: Path
    label: int
    test: bool
    line: int


def _options_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    classes = config.get("classes") or MHIST_CLASSES
    if not isinstance(classes, (list, tuple)) or len(classes) < 2 or len(set(map(str, classes))) != len(classes):
        problems.append(f"classes must list at least two distinct label values, got {classes!r}")
    if config.get("normalisation", "imagenet") not in NORMALISATIONS:
        problems.append(f"normalisation {config.get('normalisation')!r} is not one of {', '.join(NORMALISATIONS)}")
    augmentation = config.get("augmentation") or []
    if not isinstance(augmentation, (list, tuple)) or any(a not in AUGMENTATIONS for a in augmentation):
        problems.append(f"augmentation must be a list of {', '.join(AUGMENTATIONS)}, got {augmentation!r}")
    size = config.get("image_size", 224)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        problems.append(f"image_size must be a positive integer, got {size!r}")
    return problems


def _shape(config: dict[str, Any]) -> DatasetShape:
    """Class count and image shape from the config alone (planning never reads the CSV)."""
    classes = config.get("classes") or MHIST_CLASSES
    size = config.get("image_size", 224)
    return DatasetShape(len(classes), (3, size, size))


def _read_rows(annotations: Path) -> list[dict[str, str]]:
    if not annotations.is_file():
        raise DataError(
            f"image_csv: {annotations} not found. Expected a folder with the images and a CSV of labels; for "
            f"MHIST, get images.zip and annotations.csv from {MHIST_PAGE}, unzip images.zip beside "
            f"annotations.csv (giving {annotations.parent / 'images'}/), and point `folder` (relative to the data "
            "root) at it. " + data_root_hint(download=False)
        )
    try:
        with open(annotations, newline="", encoding="utf-8-sig") as file:
            return list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"image_csv: cannot read {annotations} as a CSV file: {error}") from error


def scan(directory: Path, params: dict[str, Any]) -> list[Entry]:
    """Every CSV row checked against the folder; all problems of a kind reported at once."""
    annotations = directory / params["annotations"]
    rows = _read_rows(annotations)
    if not rows:
        raise DataError(f"image_csv: {annotations} has no rows under its header.")
    columns = [params["file_column"], params["label_column"]]
    if params["split_column"] is not None:
        columns.append(params["split_column"])
    missing = [column for column in columns if column not in rows[0]]
    if missing:
        raise DataError(
            f"image_csv: {annotations} has no column {', '.join(map(repr, missing))}; its columns are "
            f"{', '.join(map(repr, rows[0]))} (set file_column, label_column, split_column for the data set)."
        )
    label_of = {str(name): index for index, name in enumerate(params["classes"])}
    splits = {params["train_split"]: False, params["test_split"]: True}
    images = directory / params["images"]
    entries, problems = [], []
    for line, row in enumerate(rows, 2):  # line 1 is the header
        name, label = (row[params["file_column"]] or "").strip(), (row[params["label_column"]] or "").strip()
        split = (row[params["split_column"]] or "").strip() if params["split_column"] is not None else None
        if label not in label_of:
            problems.append(f"line {line}: label {label!r} is not one of {', '.join(label_of)} (the `classes` key)")
        elif split is not None and split not in splits:
            problems.append(
                f"line {line}: split {split!r} is neither {params['train_split']!r} nor {params['test_split']!r}"
            )
        elif not (images / name).is_file():
            problems.append(f"line {line}: {images / name} is missing")
        else:
            entries.append(Entry(images / name, label_of[label], bool(split is not None and splits[split]), line))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DataError(f"image_csv: {annotations} does not match {images}/: {shown}.")
    if params["split_column"] is None:
        labels = np.array([entry.label for entry in entries])
        _, test_index = stratified_split(labels, params["test_fraction"], params["split_seed"])
        test_set = set(test_index.tolist())
        entries = [Entry(e.path, e.label, i in test_set, e.line) for i, e in enumerate(entries)]
    return entries


def decode(path: Path, size: int) -> np.ndarray:
    """One image as size x size x 3 uint8: shorter side resized to ``size`` (bilinear, antialiased), centre crop."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            width, height = image.size
            if (width, height) != (size, size):
                scale = size / min(width, height)
                resized = (max(size, round(width * scale)), max(size, round(height * scale)))
                image = image.resize(resized, Image.Resampling.BILINEAR)
                left, top = round((resized[0] - size) / 2), round((resized[1] - size) / 2)  # as CenterCrop
                image = image.crop((left, top, left + size, top + size))
            return np.array(image)
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"image_csv: cannot decode {path} ({error}); the file may be truncated.") from error


def cache_key(entries: list[Entry], directory: Path, size: int, classes: list[str]) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}\n{size}\n{' '.join(classes)}\n".encode())
    for entry in entries:
        content = hashlib.sha256(entry.path.read_bytes()).hexdigest()
        name = entry.path.relative_to(directory).as_posix()
        digest.update(f"{name}\t{entry.label}\t{int(entry.test)}\t{content}\n".encode())
    return digest.hexdigest()[:16]


def _decode_all(entries: list[Entry], size: int) -> torch.Tensor:
    images = torch.empty((len(entries), 3, size, size), dtype=torch.uint8)
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # PIL releases the GIL while decoding
        for index, pixels in enumerate(pool.map(lambda e: decode(e.path, size), entries)):
            images[index] = torch.from_numpy(pixels).permute(2, 0, 1)
    return images


def _cache_candidates(directory: Path, cache_dir: str | None) -> list[Path]:
    if cache_dir is not None:
        return [Path(cache_dir).expanduser()]
    return [directory, Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kdbench"]


def load_images(
    entries: list[Entry], directory: Path, size: int, classes: list[str], cache_dir: str | None
) -> torch.Tensor:
    """The decoded images of ``entries`` in order, from the cache when its key matches."""
    name = f".kdbench-cache-{cache_key(entries, directory, size, classes)}.pt"
    candidates = _cache_candidates(directory, cache_dir)
    for folder in candidates:
        if (folder / name).is_file():
            try:
                content = torch.load(folder / name, map_location="cpu", weights_only=True)
                if content.get("format") == CACHE_FORMAT and len(content["images"]) == len(entries):
                    return content["images"]
            except Exception as error:  # a cache is disposable: decode again rather than fail
                warnings.warn(f"Ignoring unreadable image cache {folder / name}: {error}", stacklevel=2)
    images = _decode_all(entries, size)
    buffer = io.BytesIO()
    torch.save({"format": CACHE_FORMAT, "images": images}, buffer)
    failures = []
    for folder in candidates:
        try:
            atomic_write_bytes(folder / name, buffer.getvalue())
            break
        except OSError as error:
            failures.append(f"{folder}: {error}")
    else:
        warnings.warn(
            f"Could not cache decoded images ({'; '.join(failures)}); pass a writable cache_dir.", stacklevel=2
        )
    return images


@DATASETS.register("image_csv", aliases=("image-csv", "mhist"), shape=_shape)
def image_csv(
    *,
    root: str = "data",
    folder: str = "mhist",
    images: str = "images",
    annotations: str = "annotations.csv",
    file_column: str = "Image Name",
    label_column: str = "Majority Vote Label",
    split_column: str | None = "Partition",
    train_split: str = "train",
    test_split: str = "test",
    classes: list | None = None,
    image_size: int = 224,
    normalisation: str = "imagenet",
    augmentation: list | None = None,
    test_fraction: float = 0.3,
    split_seed: int = 0,
    cache_dir: str | None = None,
) -> NamedDataSource:
    """A labelled image folder; MHIST's layout and classes by default."""
    params = dict(locals())
    params["classes"] = [str(name) for name in (classes or MHIST_CLASSES)]
    problems = _options_problems(params)
    if problems:
        raise DataError(f"image_csv: {'; '.join(problems)}.")
    directory = Path(root).expanduser() / Path(folder).expanduser()
    entries = scan(directory, params)
    pixels = load_images(entries, directory, image_size, params["classes"], cache_dir)
    labels = torch.tensor([entry.label for entry in entries], dtype=torch.int64)
    is_test = torch.tensor([entry.test for entry in entries], dtype=torch.bool)
    if bool(is_test.all()) or not bool(is_test.any()):
        raise DataError(f"image_csv: {directory / annotations} gives no {'train' if is_test.all() else 'test'} images.")
    train, test = Split(pixels[~is_test], labels[~is_test]), Split(pixels[is_test], labels[is_test])
    if normalisation == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    elif normalisation == "train":
        mean, std = channel_statistics(train.images)
    else:
        mean, std = (0.0,) * 3, (1.0,) * 3
    chosen = set(augmentation or [])
    return NamedDataSource(
        name="image_csv",
        num_classes=len(params["classes"]),
        train=train,
        test=test,
        mean=mean,
        std=std,
        augmentation=Augmentation(
            crop_padding=image_size // 8 if "crop" in chosen else 0,
            horizontal_flip="flip" in chosen,
            resized_crop_scale=(0.08, 1.0) if "random_resized_crop" in chosen else None,
        ),
        class_names=tuple(params["classes"]),
    )
