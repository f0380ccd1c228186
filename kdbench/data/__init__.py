"""Data sets: one file per data set, each registering a factory that returns a ``DataSource``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from kdbench.data.base import Augmentation, DataError, DataSource, Split, TensorBatches
from kdbench.registry import Registry

DATASETS: Registry = Registry("dataset")


def load_dataset(name: str, **params: Any) -> DataSource:
    return DATASETS.get(name)(**params)


def dataset_parameters(name: str) -> dict[str, Any]:
    """The keyword parameters a suite may give a data set, with their defaults."""
    signature = inspect.signature(DATASETS.get(name))
    return {
        n: (None if p.default is inspect.Parameter.empty else p.default)
        for n, p in signature.parameters.items()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


# Class count and image shape of each data set, known without loading it (for plans and FLOPs).
_SHAPES: dict[str, tuple[int, tuple[int, int, int]]] = {
    "digits": (10, (3, 8, 8)),
    "cifar10": (10, (3, 32, 32)),
    "cifar100": (100, (3, 32, 32)),
    "tinyimagenet": (200, (3, 64, 64)),
}


def dataset_shape(dataset: dict) -> tuple[int, tuple[int, int, int]]:
    """(number of classes, image shape C x H x W) of a resolved dataset config."""
    name = DATASETS.canonical(dataset["name"])
    if name == "synthetic":
        params = {**dataset_parameters(name), **dataset}
        return params["num_classes"], (params["channels"], params["image_size"], params["image_size"])
    return _SHAPES[name]


for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DATASETS", "Augmentation", "DataError", "DataSource", "Split", "TensorBatches", "load_dataset"]
