"""Every registered data set declares what planning needs (class count, image shape) with itself."""

from __future__ import annotations

import pytest

from kdbench.data import DATASETS, DatasetShape, dataset_parameters, dataset_shape, load_dataset


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_data_set_declares_its_shape(name: str) -> None:
    shape = dataset_shape({"name": name})
    assert isinstance(shape, DatasetShape)
    assert shape.num_classes >= 2
    assert len(shape.image_shape) == 3 and all(isinstance(n, int) and n > 0 for n in shape.image_shape)


@pytest.mark.parametrize(
    "config",
    [
        {"name": "digits"},
        {"name": "synthetic"},
        {"name": "synthetic", "num_classes": 7, "image_size": 12, "channels": 1},
    ],
)
def test_the_declared_shape_is_the_loaded_one(config: dict) -> None:
    """For the data sets available offline, the declaration agrees with what loading returns."""
    params = {k: v for k, v in config.items() if k != "name"}
    source = load_dataset(config["name"], **params)
    declared = dataset_shape(config)
    assert declared.num_classes == source.num_classes
    assert declared.image_shape == tuple(source.train.images.shape[1:]) == tuple(source.test.images.shape[1:])


def test_parameterised_shapes_see_the_defaults() -> None:
    defaults = dataset_parameters("synthetic")
    assert dataset_shape({"name": "synthetic"}).num_classes == defaults["num_classes"]
