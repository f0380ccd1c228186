"""Data sets: one file per data set, each registering a factory that returns a ``DataSource``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from kdbench.data.base import Augmentation, DataError, DatasetShape, DataSource, Split, TensorBatches
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


def dataset_shape(dataset: dict) -> DatasetShape:
    """Class count and image shape (C x H x W) of a dataset config, as the data set declared them when it
    registered (``shape=`` a ``DatasetShape``, or a function of the config for parameterised data sets)."""
    name = DATASETS.canonical(dataset["name"])
    shape = DATASETS.facts(name).get("shape")
    if shape is None:
        raise TypeError(f"data set '{name}' registered no shape= (a DatasetShape or a function of its config)")
    declared = shape({**dataset_parameters(name), **dataset}) if callable(shape) else shape
    if dataset.get("groups"):  # classes relabelled by group (kdbench.data.grouping): one class per group
        return DatasetShape(len(dataset["groups"]), declared.image_shape)
    return declared


for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "DATASETS",
    "Augmentation",
    "DataError",
    "DatasetShape",
    "DataSource",
    "Split",
    "TensorBatches",
    "load_dataset",
]
