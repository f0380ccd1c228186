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


for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DATASETS", "Augmentation", "DataError", "DataSource", "Split", "TensorBatches", "load_dataset"]
