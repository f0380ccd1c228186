"""The method contract.

A distillation *term* (``DistillLoss``) is a small module owning its trainable parts (connectors,
embeddings); it reads the student's and the frozen teacher's ``Features`` and returns named, already
weighted loss terms. A run's method is a list of terms; ``Distiller`` combines them with the CE
term, runs the student and the teacher once per step, and is what the training loop optimises.

Loss = ce_weight * CE + sum over terms of (term weight * term loss), as the CRD code wires its
baselines (gamma * CE + alpha * KD + beta * method loss).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.models.base import Features, StagedModel, StageInfo

LossFunction = TypeVar("LossFunction", bound=Callable[..., torch.Tensor])


def _widen(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() and value.element_size() < 4 else value
    if isinstance(value, (list, tuple)):
        return type(value)(_widen(v) for v in value)
    return value


def _first_tensor(values: Sequence[Any]) -> torch.Tensor | None:
    for value in values:
        if isinstance(value, torch.Tensor):
            return value
        if isinstance(value, (list, tuple)) and (found := _first_tensor(value)) is not None:
            return found
    return None


def full_precision(loss: LossFunction) -> LossFunction:
    """Run a loss formula at float32 or wider even under mixed precision (autocast off, half inputs widened).

    The reference code computes every loss in float32; under bf16 autocast, matmuls such as Gram
    and FSP matrices would otherwise run in bf16 (3 significant digits). The features themselves
    and any connector modules stay in the caller's precision.
    """

    @functools.wraps(loss)
    def wrapper(*args: Any, **kwargs: Any) -> torch.Tensor:
        first = _first_tensor([*args, *kwargs.values()])
        device_type = first.device.type if first is not None else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            return loss(*(_widen(a) for a in args), **{k: _widen(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


class DistillLoss(nn.Module):
    """One distillation term. Subclasses take explicit keyword parameters with the reference defaults."""

    #: weight of the CE term when this method is used alone (the CRD code's gamma)
    default_ce_weight: ClassVar[float] = 1.0
    #: whether the teacher's forward pass on the images is needed
    needs_teacher: ClassVar[bool] = True
    #: whether the method reads stage outputs as C x H x W feature maps (it then does not apply to a
    #: network whose stages are vectors, such as the course project's fully connected student)
    needs_feature_maps: ClassVar[bool] = False
    #: whether ``forward`` takes ``indices=`` (each image's index in the training set; CRD's memory)
    needs_indices: ClassVar[bool] = False
    #: facts of the training set the constructor takes as keywords (``create_distiller(data_facts=...)``
    #: passes them): ``train_labels``, the training split's labels in dataset order (its size is theirs)
    data_facts: ClassVar[tuple[str, ...]] = ()

    def __init__(self, teacher: StagedModel | None, student: StagedModel, *, weight: float):
        super().__init__()
        self.weight = weight
        # A tuple hides the teacher from nn.Module: never a submodule, so never in the optimizer
        # or in this term's state dict.
        self._frozen_teacher = (teacher,)
        self.warmup_epochs = 0

    # -- epoch-dependent behaviour: the training loop calls Distiller.set_epoch at every epoch start --
    def set_epoch(self, epoch: int) -> None:
        """The 0-based epoch about to train (a curriculum such as CTKD's reads it); default: nothing."""

    def enable_warmup(self, epochs: int) -> None:
        """Ramp this term's losses linearly over the first ``epochs`` epochs (mdistiller's DKD and
        ReviewKD warm-up: factor min(e / epochs, 1) at its 1-based epoch e); 0 = none.

        The factor is a non-persistent buffer: it follows the module to its device, is a graph input
        under torch.compile (no recompilation per epoch) and is not checkpointed (the epoch is).
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"warmup_epochs: {epochs!r} must be 0 (no warm-up) or a number of epochs")
        self.warmup_epochs = epochs
        if epochs > 0:
            self.register_buffer("warmup_scale", torch.tensor(warmup_factor(0, epochs)), persistent=False)

    @property
    def teacher(self) -> StagedModel:
        teacher = self._frozen_teacher[0]
        if teacher is None:
            raise RuntimeError(f"{type(self).__name__} needs a teacher")
        return teacher

    def forward(self, student: Features, teacher: Features | None, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # A method that cannot apply to a pair says so at plan time (the report prints NA).
    @classmethod
    def not_applicable(cls, teacher: Sequence[StageInfo], student: Sequence[StageInfo], params: dict) -> str | None:
        """Why the method does not apply to this pair (None: it does): its declared need for feature maps
        first, then the method's own rule (``pair_not_applicable``)."""
        if cls.needs_feature_maps:
            flat = [
                side for side, info in (("teacher", teacher), ("student", student)) if not all(s.spatial for s in info)
            ]
            if flat:
                return (
                    f"{cls.__name__} distils stage feature maps, and the {' and '.join(flat)}'s stages are "
                    "vectors (a fully connected network)"
                )
        return cls.pair_not_applicable(teacher, student, params)

    @classmethod
    def pair_not_applicable(
        cls, teacher: Sequence[StageInfo], student: Sequence[StageInfo], params: dict
    ) -> str | None:
        """A method's own rule for pairs it cannot distil (channels that must match, stages it needs)."""
        return None

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        """What is wrong with these parameter values whatever the pair (checked before planning).

        Each problem is one message naming the key, the bad value and what is allowed. Types that
        match the defaults' are checked by the suite; this catches the rest (ranges, selections).
        """
        return []

    # Two-stage methods (FSP, two-stage FitNet) train the student's feature layers on their own
    # loss for ``init_epochs`` epochs before the main schedule.
    def init_epochs(self) -> int:
        return 0

    def init_loss(self, student: Features, teacher: Features | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def init_modules(self, student: StagedModel) -> list[nn.Module]:
        """What trains during the init stage: by default the student's feature layers and this term's parts.

        As the CRD code's ``helper/pretrain.py``: these are in train mode during the init stage, the
        rest of the student in eval mode (its BN statistics stay put).
        """
        return [student.stem, student.stages, self]

    def init_learning_rate(self, lr: float) -> float:
        """The init stage's learning rate given the main schedule's ``lr`` (default: the same)."""
        return lr

    def init_parameters(self, student: StagedModel) -> list[nn.Parameter]:
        seen: dict[int, nn.Parameter] = {}
        for module in self.init_modules(student):
            for p in module.parameters():
                seen.setdefault(id(p), p)
        return list(seen.values())

    @classmethod
    def parameter_defaults(cls) -> dict[str, Any]:
        """Every keyword parameter of ``__init__`` with its default: what a suite may set.

        Every method with a ``weight`` also takes ``warmup_epochs`` (default 0, or the method's own
        default where its ``__init__`` declares it, as DKD's 20): the general linear warm-up of
        ``enable_warmup``. (Vanilla has no weighted term, so nothing to warm up, and keeps no parameters.)
        """
        signature = inspect.signature(cls.__init__)
        defaults = {
            name: p.default
            for name, p in signature.parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
        }
        if "weight" in defaults:
            defaults.setdefault("warmup_epochs", 0)
        return defaults

    @classmethod
    def takes_warmup(cls) -> bool:
        """Whether ``__init__`` declares ``warmup_epochs`` itself (else ``create_distiller`` applies it)."""
        return "warmup_epochs" in inspect.signature(cls.__init__).parameters


class Distiller(nn.Module):
    """Student + distillation terms; the frozen teacher rides along outside the module tree."""

    def __init__(
        self,
        student: StagedModel,
        teacher: StagedModel | None,
        terms: Sequence[tuple[str, DistillLoss]],
        ce_weight: float,
    ):
        super().__init__()
        self.student = student
        self.terms = nn.ModuleDict(dict(terms))
        self.ce_weight = ce_weight
        self._frozen_teacher = (teacher,)
        if teacher is not None:
            freeze(teacher)
        self.needs_teacher = teacher is not None and any(t.needs_teacher for t in self.terms.values())
        #: whether the training loop must pass ``indices=`` to ``forward``
        self.needs_indices = any(t.needs_indices for t in self.terms.values())

    @property
    def teacher(self) -> StagedModel | None:
        return self._frozen_teacher[0]

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # BN statistics of the teacher never move
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The student and the terms' own parts: exactly what the optimizer gets."""
        return self.parameters()

    def teacher_features(self, images: torch.Tensor) -> Features | None:
        if not self.needs_teacher:
            return None
        with torch.no_grad():
            return self.teacher.forward_features(images)

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        student = self.student.forward_features(images)
        teacher = self.teacher_features(images)
        losses = {"ce": self.ce_weight * F.cross_entropy(student.logits, labels)}
        for term in self.terms.values():
            if term.needs_indices:
                term_losses = term(student, teacher, labels, indices=indices)
            else:
                term_losses = term(student, teacher, labels)
            if term.warmup_epochs:
                term_losses = {k: term.warmup_scale * v for k, v in term_losses.items()}
            losses.update(term_losses)
        return student.logits, losses

    def set_epoch(self, epoch: int) -> None:
        """Tell every term the 0-based epoch about to train (warm-ups, curricula); call before its steps.

        ``epoch`` counts the init stage's epochs too (the training loop's count); the terms get the
        main schedule's epoch, so a warm-up or curriculum starts with the main stage (0 during init).
        """
        main_epoch = max(epoch - self.init_epochs(), 0)
        for term in self.terms.values():
            term.set_epoch(main_epoch)
            if term.warmup_epochs:
                term.warmup_scale.fill_(warmup_factor(main_epoch, term.warmup_epochs))

    # -- the optional init stage (FSP, two-stage FitNet) --
    def init_epochs(self) -> int:
        return max((term.init_epochs() for term in self.terms.values()), default=0)

    def init_learning_rate(self, lr: float) -> float:
        """The init stage's learning rate (FT pre-trains its paraphraser at the CRD code's 0.01)."""
        rates = {term.init_learning_rate(lr) for term in self.terms.values() if term.init_epochs()}
        if len(rates) > 1:
            raise ValueError(f"the init-stage terms ask for different learning rates: {sorted(rates)}")
        return rates.pop() if rates else lr

    def init_parameters(self) -> list[nn.Parameter]:
        seen: dict[int, nn.Parameter] = {}
        for term in self.terms.values():
            if term.init_epochs():
                for p in term.init_parameters(self.student):
                    seen.setdefault(id(p), p)
        return list(seen.values())

    def init_forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        init_terms = [term for term in self.terms.values() if term.init_epochs()]
        was_training = self.training
        if was_training:
            # Only the init modules train; the rest of the student runs in eval mode (CRD pretrain.py).
            self.student.eval()
            for term in init_terms:
                for module in term.init_modules(self.student):
                    module.train()
        losses: dict[str, torch.Tensor] = {}
        try:
            student = self.student.forward_features(images)
            teacher = self.teacher_features(images)
            for term in init_terms:
                losses.update(term.init_loss(student, teacher))
        finally:
            self.train(was_training)
        return losses


def warmup_factor(epoch: int, warmup_epochs: int) -> float:
    """min((epoch + 1) / warmup_epochs, 1) for the 0-based ``epoch``: mdistiller's ``min(epoch / warmup, 1)``
    at its 1-based epoch, so the first epoch trains at 1 / warmup_epochs, never at 0."""
    return min((epoch + 1) / warmup_epochs, 1.0) if warmup_epochs > 0 else 1.0


def freeze(model: nn.Module) -> None:
    """Frozen teacher: no gradients into its parameters, eval mode (BN statistics fixed)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
