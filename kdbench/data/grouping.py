"""Class grouping for any labelled data set (MNIST digits 0-4 vs 5-9), and class names for reports.

``group_classes(source, groups)`` relabels every image by the group its class belongs to: group
``g`` of ``groups`` (a list of lists of class indices) becomes class ``g``. Every class must be in
exactly one group, so no image is dropped and the split sizes stay. The grouped data set keeps its
images, normalisation and augmentation; its class names join the members' names ("0-4" for
consecutive digits, else "a+b+c"). Subclass distillation trains on such a coarse task (the course
project's colab collapses MNIST to 2 classes).

``NamedDataSource`` is a ``DataSource`` that also knows its class names, for per-class tables and
confusion matrices; ``class_names(source)`` gives them for any source (indices where it has none).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from kdbench.data.base import DataError, DataSource, Split


@dataclasses.dataclass
class NamedDataSource(DataSource):
    """A data set that names its classes (``class_names[i]`` is class ``i``)."""

    class_names: tuple[str, ...] = ()


def class_names(source: DataSource) -> list[str]:
    """The names of ``source``'s classes, or their indices when it has none."""
    names = getattr(source, "class_names", ())
    return list(names) if names else [str(index) for index in range(source.num_classes)]


def grouping_problems(groups: object, num_classes: int) -> list[str]:
    """What is wrong with ``groups`` for a data set of ``num_classes`` classes (empty when it is fine)."""
    if not isinstance(groups, (list, tuple)) or len(groups) < 2:
        return [f"groups must be a list of at least two lists of class indices, got {groups!r}"]
    problems, seen = [], {}
    for index, group in enumerate(groups):
        if not isinstance(group, (list, tuple)) or not group:
            problems.append(f"group {index} must be a non-empty list of class indices, got {group!r}")
            continue
        for label in group:
            if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < num_classes:
                problems.append(f"group {index}: {label!r} is not a class index in 0..{num_classes - 1}")
            elif label in seen:
                problems.append(f"class {label} is in group {seen[label]} and in group {index}")
            else:
                seen[label] = index
    missing = sorted(set(range(num_classes)) - set(seen))
    if missing and not problems:
        problems.append(f"classes {missing} are in no group (every class must be in exactly one)")
    return problems


def _group_name(members: Sequence[int], names: list[str]) -> str:
    ordered = sorted(members)
    consecutive = ordered == list(range(ordered[0], ordered[-1] + 1))
    if consecutive and len(ordered) > 2:
        return f"{names[ordered[0]]}-{names[ordered[-1]]}"
    return "+".join(names[label] for label in ordered)


def group_classes(source: DataSource, groups: Sequence[Sequence[int]]) -> NamedDataSource:
    """``source`` with each image labelled by its class's group (see the module docstring)."""
    problems = grouping_problems(groups, source.num_classes)
    if problems:
        raise DataError(f"{source.name}: bad class grouping: {'; '.join(problems)}")
    mapping = torch.empty(source.num_classes, dtype=torch.int64)
    for index, group in enumerate(groups):
        mapping[list(group)] = index
    names = class_names(source)

    def relabel(split: Split) -> Split:
        return Split(split.images, mapping[split.labels])

    fields = {field.name: getattr(source, field.name) for field in dataclasses.fields(DataSource)}
    fields.update(num_classes=len(groups), train=relabel(source.train), test=relabel(source.test))
    return NamedDataSource(**fields, class_names=tuple(_group_name(group, names) for group in groups))
