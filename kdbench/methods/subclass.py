"""Subclass distillation: Mueller, Kornblith, Hinton, "Subclass distillation" (arXiv:2002.03936, 2020).

Reference code: the paper's only official code, the TensorFlow colab
``google-research/google-research: subclass_distillation/mnist_colab.ipynb``. Two methods:

- ``subclass_teacher`` trains a teacher whose head has ``subclasses`` logits per class
  (``kdbench.models.subclass_head``; class logits = log-sum-exp over each class's subclasses) on
  CE(class logits, labels) + beta * the auxiliary (negative sampling) loss of its subclass logits:
  each example's subclass logits standardised over the subclass axis (its own mean and variance,
  variance epsilon 1e-9, as ``tf.nn.batch_normalization``) and scaled by 1 / sqrt(T_aux * n), n the
  total number of subclass logits (C * s, the colab's ``num_subclasses``); then
  mean_i logsumexp_j (v_i . v_j) - 1 / T_aux - log(batch size). Defaults as the colab: 5 subclasses
  per class, beta (``weight``) 1, T_aux (``temperature``) 1, CE weight 1.
- ``subclass`` distils such a teacher into a student with the same head:
  alpha * T^2 * CE(softmax(teacher subclass logits / T), student subclass logits / T)
  + (1 - alpha) * CE(student class logits, labels), alpha (``weight``) 0.5, T 4, the teacher's logits
  detached (its forward runs under no_grad). The CE with soft targets is computed as written (not
  as a KL divergence: the two differ by the teacher's entropy, a constant, so the gradients are the
  same and the logged loss is the colab's). ``subclasses`` is filled in at plan time from the
  teacher. A teacher without a subclass head counts as one with 1 subclass per class (its logits):
  there this is conventional KD in its CE form.

The colab's conventional-KD baseline is kdbench's ``kd`` with ``weight: 0.5, temperature: 4`` and CE
weight 0.5 on the teacher's class logits (its CE with soft targets, again up to the constant entropy).

A PyTorch port seen elsewhere normalises the subclass logits to unit L2 length instead of
standardising them, and softens the teacher's *class* probabilities by the temperature inside its
CE: both are not the colab's formulas (``tests/methods/test_subclass.py`` shows they give other numbers).
Features: the subclass logits (``SubclassFeatures.subclass_logits``) of the model (teacher method)
or of both networks (student method); CE on the class logits is the Distiller's.
Deliberate differences from the reference: none in the losses (the suites name the recipe's).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.methods.dkd import positive_temperature
from kdbench.models.base import Features, StagedModel

#: the colab's variance epsilon of the per-example standardisation
AUX_EPSILON = 1e-9


@full_precision
def auxiliary_loss(
    subclass_logits: torch.Tensor, temperature: float = 1.0, epsilon: float = AUX_EPSILON
) -> torch.Tensor:
    """The colab's ``negative_sampling_loss``: standardise each example's logits over the subclass axis,
    scale by 1 / sqrt(T * n), then mean_i logsumexp_j (v_i . v_j) - 1 / T - log(B)."""
    batch, total = subclass_logits.shape
    mean = subclass_logits.mean(dim=-1, keepdim=True)
    variance = subclass_logits.var(dim=-1, unbiased=False, keepdim=True)  # tf.nn.moments: the population variance
    normalised = (subclass_logits - mean) * torch.rsqrt(variance + epsilon) / math.sqrt(temperature * total)
    correlations = normalised @ normalised.T
    return torch.logsumexp(correlations, dim=-1).mean() - 1.0 / temperature - math.log(batch)


@full_precision
def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * mean_i CE(softmax(z_T / T), z_S / T): the colab's ``distillation_loss`` (teacher detached)."""
    targets = F.softmax(teacher_logits.detach() / temperature, dim=-1)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    return -(targets * log_q).sum(dim=-1).mean() * temperature**2


def _subclass_logits(features: Features) -> torch.Tensor:
    """The subclass logits; a model without a subclass head is one with 1 subclass per class (its logits)."""
    logits = getattr(features, "subclass_logits", None)
    return features.logits if logits is None else logits


def _subclass_problems(method: str, params: dict[str, Any], minimum: int) -> list[str]:
    value = params.get("subclasses")
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return [f"{method}.subclasses: {value!r} must be a whole number of subclasses per class, at least {minimum}"]
    return []


@METHODS.register("subclass_teacher", aliases=("SubclassTeacher",))
class SubclassTeacher(DistillLoss):
    """The teacher's auxiliary loss (beta * negative sampling on its subclass logits); CE is the Distiller's."""

    needs_teacher = False
    gives_subclass_head: ClassVar[bool] = True

    def __init__(
        self,
        teacher: StagedModel | None,
        student: StagedModel,
        *,
        subclasses: int = 5,
        weight: float = 1.0,
        temperature: float = 1.0,
    ):
        super().__init__(teacher, student, weight=weight)
        problems = self.parameter_problems({"subclasses": subclasses, "temperature": temperature})
        if problems:
            raise ValueError("; ".join(problems))
        self.subclasses, self.temperature = subclasses, temperature

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        return _subclass_problems("subclass_teacher", params, 1) + positive_temperature("subclass_teacher", params)

    def forward(self, student: Features, teacher: Features | None, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = _subclass_logits(student)
        return {"aux": self.weight * auxiliary_loss(logits, self.temperature)}


@METHODS.register("subclass", aliases=("subclass_kd", "SubclassKD"))
class SubclassDistillation(DistillLoss):
    """alpha * T^2 * CE(teacher subclass softmax_T, student subclass logits / T); CE weight 1 - alpha."""

    default_ce_weight = 0.5
    gives_subclass_head: ClassVar[bool] = True

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        *,
        weight: float = 0.5,
        temperature: float = 4.0,
        subclasses: int = 0,
    ):
        super().__init__(teacher, student, weight=weight)
        problems = self.parameter_problems({"temperature": temperature})
        if problems:
            raise ValueError("; ".join(problems))
        self.temperature, self.subclasses = temperature, subclasses

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        # 0: planning sets it to the teacher's (a suite leaves it out)
        return _subclass_problems("subclass", params, 0) + positive_temperature("subclass", params)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        student_logits, teacher_logits = _subclass_logits(student), _subclass_logits(teacher)
        return {"subclass": self.weight * soft_cross_entropy(student_logits, teacher_logits, self.temperature)}
