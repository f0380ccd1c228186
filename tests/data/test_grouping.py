"""Class grouping on the embedded digits: labels mapped by group, every mistake named."""

from __future__ import annotations

import re

import pytest
import torch

from kdbench.data import DataError, load_dataset
from kdbench.data.grouping import class_names, group_classes, grouping_problems


def test_grouping_relabels_and_keeps_the_images() -> None:
    source = load_dataset("digits")
    grouped = group_classes(source, [[1, 3, 5, 7, 9], [0, 2, 4, 6, 8]])
    assert grouped.num_classes == 2 and class_names(grouped) == ["1+3+5+7+9", "0+2+4+6+8"]
    assert torch.equal(grouped.train.labels, (source.train.labels % 2 == 0).long())
    assert torch.equal(grouped.test.images, source.test.images)
    assert (grouped.mean, grouped.std, grouped.augmentation) == (source.mean, source.std, source.augmentation)


@pytest.mark.parametrize(
    ("groups", "problem"),
    [
        ([[0, 1, 2]], "at least two"),
        ([[0, 1], [1, 2, 3]], "class 1 is in group 0 and in group 1"),
        ([[0, 1], [2]], r"classes \[3\] are in no group"),
        ([[0, 1], [2, 7]], "7 is not a class index in 0..3"),
        ([[0, 1, 2, 3], []], "group 1 must be a non-empty list"),
    ],
)
def test_bad_groupings_are_named(groups: list, problem: str) -> None:
    problems = grouping_problems(groups, 4)
    assert any(re.search(problem, p) for p in problems), problems
    with pytest.raises(DataError, match="bad class grouping"):
        group_classes(load_dataset("synthetic", num_classes=4, image_size=4, train_size=8, test_size=4), groups)
