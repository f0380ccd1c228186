"""``tinyimagenet``: Tiny-ImageNet-200 read in place, from the folder as users unpack it.

Layout (http://cs231n.stanford.edu/tiny-imagenet-200.zip), ``root`` being the folder that holds
``tiny-imagenet-200/`` or that folder itself::

    tiny-imagenet-200/wnids.txt                       the 200 class ids, one a line
    tiny-imagenet-200/train/<wnid>/images/*.JPEG      500 a class
    tiny-imagenet-200/val/images/*.JPEG               10,000 images, 50 a class
    tiny-imagenet-200/val/val_annotations.txt         "<file>\\t<wnid>\\t<box>" for every val image

Class index = position of the wnid in sorted order. The test split is ``val`` (the release's ``test``
has no labels). Validation labels always come from ``val_annotations.txt``, never from folder names,
so the raw ``val/images`` folder can never pass as one class; a val tree that a script reorganised into
``val/<wnid>/images/`` or ``val/<wnid>/`` is found too, still labelled from the annotations. The
complete release is checked for its counts (200 classes, 500 train and 50 val images each); any
smaller tree (the tests') only for consistency: every listed image present, every label a known
wnid, every class with train and val images.

Images are 64x64 RGB (the few grey JPEGs are converted). Augmentation: random crop 64 after zero
padding ``crop_padding`` (default 8, the CRD CIFAR padding 4/32 at the same relative scale; the
paper states only "per-channel normalisation") and horizontal flip. Normalisation: the per-pixel
mean and standard deviation of the train split, per channel, computed exactly at load time (the CRD
code's convention for CIFAR-100); for the release they are commonly quoted as
(0.4802, 0.4481, 0.3975) / (0.2770, 0.2691, 0.2821).

Decoding the 110,000 JPEGs takes minutes, so the decoded uint8 arrays are cached once, atomically,
in ``.kdbench-cache-<key>.pt`` next to the data (or in ``cache_dir``; if the data folder is read-only,
in ``~/.cache/kdbench``). The key hashes the file names and sizes, so a changed tree is decoded again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from kdbench.data import DATASETS
from kdbench.data.base import Augmentation, DataError, DatasetShape, DataSource, Split
from kdbench.errors import data_root_hint

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
FOLDER = "tiny-imagenet-200"
IMAGE_SIZE = 64
RELEASE_CLASSES, RELEASE_TRAIN_PER_CLASS, RELEASE_VAL_PER_CLASS = 200, 500, 50
CACHE_FORMAT = 1  # bump when the cached content changes meaning
LAYOUT = (
    f"expected layout: {FOLDER}/wnids.txt, {FOLDER}/train/<wnid>/images/*.JPEG, {FOLDER}/val/images/*.JPEG "
    f"and {FOLDER}/val/val_annotations.txt. Download {URL} and unzip it into the data root"
)
#: after LAYOUT where the tree was not found: where else it may be, and the download option
NOT_FOUND_HINT = data_root_hint()


@dataclass(frozen=True)
class Listing:
    """What is on disk: class ids, and every image with its label and size, in a fixed order."""

    directory: Path
    wnids: list[str]
    train: list[tuple[Path, int, int]]  # path, label, size in bytes
    val: list[tuple[Path, int, int]]

    def cache_key(self) -> str:
        digest = hashlib.sha256(f"{CACHE_FORMAT}\n{' '.join(self.wnids)}\n".encode())
        for name, entries in (("train", self.train), ("val", self.val)):
            digest.update(name.encode())
            for path, label, size in entries:
                digest.update(f"{path.relative_to(self.directory).as_posix()}\t{label}\t{size}\n".encode())
        return digest.hexdigest()[:16]


def find_dataset_directory(root: Path) -> Path | None:
    """``root`` itself or ``root/tiny-imagenet-200``, whichever holds ``wnids.txt``."""
    for candidate in (root, root / FOLDER):
        if (candidate / "wnids.txt").is_file():
            return candidate
    return None


def _examples(problems: Sequence[str], limit: int = 5) -> str:
    shown = "; ".join(problems[:limit])
    return shown + (f"; and {len(problems) - limit} more" if len(problems) > limit else "")


def _read_wnids(directory: Path) -> list[str]:
    lines = [line.strip() for line in (directory / "wnids.txt").read_text().splitlines()]
    wnids = [line for line in lines if line]
    duplicates = sorted(wnid for wnid, count in Counter(wnids).items() if count > 1)
    if not wnids or duplicates:
        problem = "is empty" if not wnids else f"lists {', '.join(duplicates)} more than once"
        raise DataError(f"Tiny-ImageNet: {directory / 'wnids.txt'} {problem}; {LAYOUT}.")
    return sorted(wnids)


def _list_train(directory: Path, wnids: list[str]) -> list[tuple[Path, int, int]]:
    entries, problems = [], []
    for label, wnid in enumerate(wnids):
        images = directory / "train" / wnid / "images"
        if not images.is_dir():
            problems.append(f"{images}/ is missing")
            continue
        files = sorted((e.name, e.stat().st_size) for e in os.scandir(images) if e.name.lower().endswith(".jpeg"))
        if not files:
            problems.append(f"{images}/ has no .JPEG files")
        entries.extend((images / name, label, size) for name, size in files)
    if problems:
        raise DataError(
            f"Tiny-ImageNet train split in {directory / 'train'}/ is incomplete: {_examples(problems)}; {LAYOUT}."
        )
    return entries


def _find_val_image(directory: Path, name: str, wnid: str) -> Path | None:
    for candidate in (
        directory / "val" / "images" / name,
        directory / "val" / wnid / "images" / name,
        directory / "val" / wnid / name,
    ):
        if candidate.is_file():
            return candidate
    return None


def _list_val(directory: Path, wnids: list[str]) -> list[tuple[Path, int, int]]:
    annotations = directory / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DataError(
            f"Tiny-ImageNet: {annotations} is missing; the validation labels come only from it "
            f"(never from folder names); {LAYOUT}."
        )
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    entries, problems, seen = [], [], set()
    for number, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2:
            problems.append(f"line {number} is not '<file> <wnid> ...': {line!r}")
            continue
        name, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in label_of:
            problems.append(f"line {number}: {wnid!r} is not in wnids.txt")
        elif name in seen:
            problems.append(f"line {number}: {name} is listed twice")
        elif (path := _find_val_image(directory, name, wnid)) is None:
            problems.append(f"{directory / 'val' / 'images' / name} (line {number}) is missing")
        else:
            seen.add(name)
            entries.append((path, label_of[wnid], path.stat().st_size))
    if problems:
        raise DataError(
            f"Tiny-ImageNet validation split does not match {annotations}: {_examples(problems)}; {LAYOUT}."
        )
    return entries


def _check_counts(listing: Listing) -> None:
    """The release must be complete; a smaller tree must still give every class train and val images."""
    problems = []
    for split, entries, per_class in (
        ("train", listing.train, RELEASE_TRAIN_PER_CLASS),
        ("val", listing.val, RELEASE_VAL_PER_CLASS),
    ):
        counts = Counter(label for _, label, _ in entries)
        for label, wnid in enumerate(listing.wnids):
            if len(listing.wnids) == RELEASE_CLASSES and counts[label] != per_class:
                problems.append(f"{split}: {wnid} has {counts[label]} of {per_class} images")
            elif counts[label] == 0:
                problems.append(f"{split}: {wnid} has no images")
    if problems:
        raise DataError(f"Tiny-ImageNet in {listing.directory}/ is incomplete: {_examples(problems)}; {LAYOUT}.")


def scan(root: Path, download: bool = False) -> Listing:
    """Find and check the tree: every problem becomes a DataError naming the path and the layout."""
    directory = find_dataset_directory(root)
    if directory is None and download:
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(URL, download_root=str(root))
        except Exception as error:  # network or disk: the user needs the same advice either way
            message = f"Could not download Tiny-ImageNet into {root}/: {error}; {LAYOUT}. {data_root_hint(False)}"
            raise DataError(message) from error
        directory = find_dataset_directory(root)
    if directory is None:
        raise DataError(
            f"Tiny-ImageNet not found: neither {root / FOLDER / 'wnids.txt'} nor {root / 'wnids.txt'} exists; "
            f"{LAYOUT}. {NOT_FOUND_HINT}"
        )
    wnids = _read_wnids(directory)
    listing = Listing(directory, wnids, _list_train(directory, wnids), _list_val(directory, wnids))
    _check_counts(listing)
    return listing


def _decode(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            pixels = np.array(image.convert("RGB"))  # a writable copy
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"Tiny-ImageNet: cannot decode {path} ({error}); the file may be truncated.") from error
    if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise DataError(
            f"Tiny-ImageNet: {path} is {pixels.shape[1]}x{pixels.shape[0]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}."
        )
    return pixels


def decode_split(entries: list[tuple[Path, int, int]], description: str) -> Split:
    """Decode JPEGs into one uint8 NCHW tensor, a few threads at once (PIL releases the GIL while decoding)."""
    images = torch.empty((len(entries), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        decoded = pool.map(_decode, [path for path, _, _ in entries], chunksize=64)
        for index, pixels in enumerate(tqdm(decoded, total=len(entries), desc=description, unit="img")):
            images[index] = torch.from_numpy(pixels).permute(2, 0, 1)
    return Split(images, torch.tensor([label for _, label, _ in entries], dtype=torch.int64))


def channel_statistics(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and (population) std of uint8 NCHW images on the 0..1 scale, via value counts."""
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = (counts * values).sum() / total
        variance = (counts * (values - mean) ** 2).sum() / total
        means.append(float(mean / 255))
        stds.append(float(variance.sqrt() / 255))
    return tuple(means), tuple(stds)


def _cache_directories(listing: Listing, cache_dir: str | None) -> list[Path]:
    if cache_dir is not None:
        return [Path(cache_dir).expanduser()]
    user_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kdbench"
    return [listing.directory, user_cache]


def _read_cache(path: Path) -> dict | None:
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
        if content.get("format") == CACHE_FORMAT:
            return content
    except Exception as error:  # a cache is disposable: decode again rather than fail
        warnings.warn(f"Ignoring unreadable Tiny-ImageNet cache {path}: {error}", stacklevel=3)
    return None


def _write_cache(path: Path, content: dict) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(content, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_tinyimagenet(root: Path, download: bool, cache_dir: str | None) -> dict:
    """The decoded splits and statistics, from the cache when it matches the tree on disk."""
    listing = scan(root, download)
    name = f".kdbench-cache-{listing.cache_key()}.pt"
    directories = _cache_directories(listing, cache_dir)
    for directory in directories:
        if (directory / name).is_file() and (content := _read_cache(directory / name)) is not None:
            return content
    train = decode_split(listing.train, "Decoding Tiny-ImageNet train (once, then cached)")
    val = decode_split(listing.val, "Decoding Tiny-ImageNet val")
    mean, std = channel_statistics(train.images)
    content = {
        "format": CACHE_FORMAT,
        "wnids": listing.wnids,
        "mean": list(mean),
        "std": list(std),
        "train_images": train.images,
        "train_labels": train.labels,
        "val_images": val.images,
        "val_labels": val.labels,
    }
    failures = []
    for directory in directories:
        try:
            _write_cache(directory / name, content)
            break
        except OSError as error:
            failures.append(f"{directory}: {error}")
    else:
        warnings.warn(
            f"Could not cache decoded Tiny-ImageNet ({'; '.join(failures)}); the next run decodes "
            "again. Pass a writable cache_dir.",
            stacklevel=3,
        )
    return content


@DATASETS.register("tinyimagenet", aliases=("Tiny-ImageNet", "tiny-imagenet-200"), shape=DatasetShape(200, (3, 64, 64)))
def tinyimagenet(
    *, root: str = "data", download: bool = False, cache_dir: str | None = None, crop_padding: int = 8
) -> DataSource:
    """Tiny-ImageNet-200: 100,000 train / 10,000 val 64x64 images, 200 classes; tested on val."""
    content = load_tinyimagenet(Path(root).expanduser(), download, cache_dir)
    return DataSource(
        name="tinyimagenet",
        num_classes=len(content["wnids"]),
        train=Split(content["train_images"], content["train_labels"]),
        test=Split(content["val_images"], content["val_labels"]),
        mean=tuple(content["mean"]),
        std=tuple(content["std"]),
        augmentation=Augmentation(crop_padding=crop_padding, horizontal_flip=True),
    )
