"""Distillation methods: one file per method, each registering its ``DistillLoss`` term."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from typing import Any

from kdbench.methods.base import Distiller, DistillLoss
from kdbench.models.base import StagedModel
from kdbench.registry import Registry

METHODS: Registry = Registry("method")


def default_ce_weight(names: Sequence[str]) -> float:
    """CE weight of a combination when the suite sets none: the smallest of its members' defaults.

    So ``kd`` alone is 0.1 * CE + 0.9 * KD (the CRD code's KD row), every other baseline alone is
    1 * CE + beta * loss, and ``[kd, srkd]`` keeps KD's 0.1 * CE. Override with ``ce_weight``.
    """
    return min((METHODS.get(n).default_ce_weight for n in names), default=1.0)


def create_distiller(
    student: StagedModel,
    teacher: StagedModel | None,
    terms: Sequence[tuple[str, Mapping[str, Any]]],
    ce_weight: float | None = None,
    data_facts: Mapping[str, Any] | None = None,
) -> Distiller:
    """The trainable module of one run: the student plus one term per (method name, parameters).

    ``data_facts`` holds what terms may need of the training set (``DistillLoss.data_facts``, e.g.
    ``train_labels`` for CRD's memory); each term gets the facts it declares.
    """
    built = []
    for name, params in terms:
        cls = METHODS.get(name)
        facts = {key: data_facts[key] for key in cls.data_facts if data_facts and key in data_facts}
        params = dict(params)
        warmup = None if cls.takes_warmup() else params.pop("warmup_epochs", 0)
        term = cls(teacher, student, **facts, **params)
        if warmup:  # the general method-weight warm-up (DistillLoss.enable_warmup)
            term.enable_warmup(warmup)
        built.append((METHODS.canonical(name), term))
    if ce_weight is None:
        ce_weight = default_ce_weight([n for n, _ in terms])
    return Distiller(student, teacher if any(t.needs_teacher for _, t in built) else None, built, ce_weight)


for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "DistillLoss", "Distiller", "create_distiller", "default_ce_weight"]
