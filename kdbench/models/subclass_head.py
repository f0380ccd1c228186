"""Subclass heads (Mueller, Kornblith, Hinton, "Subclass distillation", 2020) on any model of the zoo.

A model with ``s`` subclasses per class has a classifier of ``C * s`` outputs, the *subclass
logits*, ordered class by class (outputs ``c * s .. c * s + s - 1`` are class ``c``'s subclasses, as
the reference colab's reshape to ``(C, s)``). Its *class logits* are the log-sum-exp over each class's
subclasses: softmax of them equals the subclass softmax summed within each class.

``create_model_with_head`` builds the family's own network with ``C * s`` outputs (so the last layer
is initialised as the family initialises its classifier) and gives it this head: ``forward`` and
``Features.logits`` are the class logits, so CE, accuracy and every metric see ``C`` classes, and
``Features.subclass_logits`` holds the ``C * s`` subclass logits for the subclass methods. The stage
view (stem, stages, embedding) is the family's, unchanged; state dicts keep the family's keys.

Where the head comes from: a run's method. The ``subclass_teacher`` method (``kdbench.methods.
subclass``) trains a teacher with ``subclasses: s``; the ``subclass`` student method gets the same
``s`` from its teacher at plan time. ``head_subclasses(terms)`` reads it back from a run's terms, so
the run id already says which head a run has (no new key: every existing run is unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch

from kdbench.models import create_model
from kdbench.models.base import Features, StagedModel

#: the method parameter that gives a run's model a subclass head
SUBCLASSES_KEY = "subclasses"


def class_logits_of(subclass_logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, C * s) subclass logits -> (B, C) class logits: log-sum-exp over each class's s subclasses."""
    total = subclass_logits.shape[-1]
    if total % num_classes:
        raise ValueError(f"{total} subclass logits are not a multiple of {num_classes} classes")
    return torch.logsumexp(subclass_logits.reshape(*subclass_logits.shape[:-1], num_classes, -1), dim=-1)


@dataclass
class SubclassFeatures(Features):
    """``Features`` whose ``logits`` are class logits, with the subclass logits beside them."""

    subclass_logits: torch.Tensor | None = None


class SubclassHead:
    """Mixed in front of a model family: class logits out, subclass logits in ``forward_features``."""

    num_classes: int
    subclasses: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return class_logits_of(super().forward(x), self.num_classes)  # type: ignore[misc]

    def forward_features(self, x: torch.Tensor) -> SubclassFeatures:
        features = super().forward_features(x)  # type: ignore[misc]
        return SubclassFeatures(
            features.stem,
            features.stages,
            features.preact,
            features.embedding,
            class_logits_of(features.logits, self.num_classes),
            subclass_logits=features.logits,
        )


@cache
def _with_head(family: type) -> type:
    # the family's checkpoint key rules, declared on the class as kdbench.models.checkpoint requires
    namespace = {"__module__": __name__, "crd_key_rules": getattr(family, "crd_key_rules", None)}
    return type(f"Subclass{family.__name__}", (SubclassHead, family), namespace)


def create_model_with_head(
    name: str, num_classes: int, image_shape: Sequence[int] | None = None, subclasses: int | None = None, **options: Any
) -> StagedModel:
    """``create_model``, with a head of ``subclasses`` per class when given (None: the family's own head)."""
    if subclasses is None:
        return create_model(name, num_classes, image_shape, **options)
    if isinstance(subclasses, bool) or not isinstance(subclasses, int) or subclasses < 1:
        raise ValueError(f"subclasses: {subclasses!r} must be a whole number of subclasses per class, at least 1")
    model = create_model(name, num_classes * subclasses, image_shape, **options)
    model.__class__ = _with_head(type(model))
    model.num_classes = num_classes
    model.subclasses = subclasses
    return model


def head_subclasses(terms: Sequence[tuple[str, dict]]) -> int | None:
    """The subclasses per class of the model a run with these method terms trains (None: the family's head)."""
    from kdbench.methods import METHODS

    for name, params in terms:
        if getattr(METHODS.get(name), "gives_subclass_head", False):
            return int(params[SUBCLASSES_KEY])
    return None
