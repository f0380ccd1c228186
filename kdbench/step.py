"""The training step, built once: what ``kdbench.train`` runs and what ``kdbench bench`` times.

``build_training_step`` takes the student and the (frozen) teacher and returns a ``TrainingStep``:
the distiller on the device in the run's layout (``training.channels_last``), compiled or not
(``training.compile``), its optimizers (``schedule.optimizer``: SGD as in the CRD recipe by
default; a second one for the init stage of two-stage methods), the autocast context of
``training.precision`` and the per-step function (CUDA-graph step marker, forward, backward,
update, device-side bookkeeping in an ``EpochMeter``).
The training loop and the benchmark both build their step here, so the benchmark cannot measure
something other than what training runs.

A batch is what a loader yields: a tuple ``(images, labels, *extra)`` (the extras named by
``BATCH_FIELDS``, e.g. the sample indices a CRD-style memory needs) or a mapping with at least
``images`` and ``labels``; everything beyond images and labels is passed to the distiller's
forward as keyword arguments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from kdbench.methods import Distiller, create_distiller
from kdbench.models import StagedModel
from kdbench.recipe import make_optimizer  # the schedule's optimizer: SGD (the CRD recipe), Adam, AdamW

#: names of a tuple batch's elements, in order; a loader yielding indices yields (images, labels, indices)
BATCH_FIELDS = ("images", "labels", "indices")

Batch = Sequence[torch.Tensor] | Mapping[str, torch.Tensor]
Autocast = Callable[[], AbstractContextManager]


def derive_seed(seed: int, stream: str) -> int:
    """Independent seeds per purpose: the student's init must not shift when a method draws numbers."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stream}".encode()).digest()[:8], "little") % (2**63)


def batch_fields(batch: Batch) -> dict[str, torch.Tensor]:
    """A batch as named tensors: ``images``, ``labels`` and any per-sample extras (``indices``)."""
    if isinstance(batch, Mapping):
        return dict(batch)
    if len(batch) > len(BATCH_FIELDS):
        raise ValueError(f"a batch has at most {len(BATCH_FIELDS)} parts ({', '.join(BATCH_FIELDS)}), got {len(batch)}")
    return dict(zip(BATCH_FIELDS, batch, strict=False))


def autocast_for(precision: str, device: torch.device) -> Autocast:
    """The autocast context of ``training.precision``: bf16 only on CUDA (a CPU run trains in fp32)."""
    enabled = precision == "bf16" and device.type == "cuda"
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def configure_backends(training: Mapping[str, Any], device: torch.device) -> None:
    """cuDNN picks the fastest kernels unless bit-reproducible runs are asked for (CPU runs always are)."""
    if device.type == "cuda":
        deterministic = bool(training.get("deterministic"))
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic


def prepare_for_device(distiller: Distiller, training: Mapping[str, Any], device: torch.device) -> None:
    """The ``training`` settings that change how the step runs (in place); its arithmetic changes only in
    the last bits (another order of floating-point operations), which is why they are part of the run id.

    channels_last (NHWC, the fast convolution layout of cuDNN and of oneDNN on CPUs: a training step
    of these networks took 10-45% less time on a CPU, measured on 2 cores) for the student, the
    method's parts and the teacher; and ``compile``: the distiller's forward (student,
    teacher, losses) and its backward through torch.compile, with ``reduce-overhead`` and
    ``max-autotune`` replaying them as CUDA graphs on CUDA. Parameter names and the checkpoint stay
    those of the eager model.
    """
    if training.get("channels_last"):
        distiller.to(memory_format=torch.channels_last)
        if distiller.teacher is not None:
            distiller.teacher.to(memory_format=torch.channels_last)
    mode = training.get("compile", "off")
    if mode != "off":
        # one graph per batch shape (two per epoch: full and last partial batch), no dynamic shapes
        distiller.compile(mode=mode, dynamic=False)


def training_step(
    distiller: Distiller,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    autocast: Autocast,
    *,
    init_stage: bool = False,
    **extra: torch.Tensor,
) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """One optimisation step; returns the logits and the (weighted) loss terms, not yet synchronised.

    ``extra`` (per-sample tensors such as ``indices``) goes to the distiller's forward as keywords.
    A non-finite loss still takes its step: the caller checks the losses and stops the run, and the
    checkpoint it resumes from predates the step.
    """
    if getattr(distiller, "_compiled_call_impl", None) is not None:  # set by nn.Module.compile
        # a new iteration: CUDA-graph outputs of the previous step may be overwritten from here on
        torch.compiler.cudagraph_mark_step_begin()
    with autocast():
        if init_stage:
            logits, losses = None, distiller.init_forward(images)
        else:
            logits, losses = distiller(images, labels, **extra)
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()
    return logits, losses


@dataclass(frozen=True)
class EpochTotals:
    """An epoch's bookkeeping read back to the host; ``nonfinite`` names the first non-finite step, if any."""

    loss_sums: dict[str, float]
    correct: int
    seen: int
    nonfinite: str | None


class EpochMeter:
    """An epoch's loss sums and correct predictions, accumulated on the device.

    Reading a loss with ``.item()`` after every step makes the CPU wait for the GPU; a CIFAR step
    at batch 64 is short enough for that wait to dominate. So the sums (float64, as a Python float
    would keep them), the correct count and the first non-finite step stay on the device, read once
    per epoch by ``finish``. The training loop stops a run whose epoch had a non-finite loss at the end
    of that epoch: it is never checkpointed, so a resumed run never sees it.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.nonfinite_steps = torch.zeros((), dtype=torch.int64, device=device)
        self.bad_terms: torch.Tensor | None = None
        self.seen = 0
        self.steps = 0

    def add(self, losses: dict[str, torch.Tensor], logits: torch.Tensor | None, labels: torch.Tensor) -> None:
        count = labels.numel()
        values = torch.stack([value.detach().double() for value in losses.values()])
        for name, value in zip(losses, values, strict=True):
            self.sums[name] = self.sums[name] + value * count if name in self.sums else value * count
        bad = ~torch.isfinite(values).all()
        self.nonfinite_steps += bad
        first = bad & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(first, self.steps, self.first_bad_step)
        self.bad_terms = values if self.bad_terms is None else torch.where(first, values, self.bad_terms)
        if logits is not None:
            self.correct += (logits.argmax(1) == labels).sum()
        self.seen += count
        self.steps += 1

    def finish(self, epoch: int) -> EpochTotals:
        """The epoch's sums, correct count and images seen as Python numbers (the epoch's host sync)."""
        step = int(self.first_bad_step.item())
        nonfinite = None
        if step >= 0:
            terms = ", ".join(f"{k}={v:.4g}" for k, v in zip(self.sums, self.bad_terms.tolist(), strict=True))
            nonfinite = f"non-finite loss at epoch {epoch + 1}, step {step + 1}: {terms}"
        sums = {k: v.item() for k, v in self.sums.items()}
        return EpochTotals(sums, int(self.correct.item()), self.seen, nonfinite)


@dataclass
class TrainingStep:
    """The distiller, its optimizers and autocast on one device; call it once per batch."""

    distiller: Distiller
    optimizer: torch.optim.Optimizer
    #: the init stage's optimizer of a two-stage method (FSP), else None
    init_optimizer: torch.optim.Optimizer | None
    autocast: Autocast
    device: torch.device

    @property
    def init_epochs(self) -> int:
        return self.distiller.init_epochs()

    def begin_epoch(self, epoch: int) -> EpochMeter:
        """Train mode (the teacher stays in eval), the distiller's ``set_epoch(epoch)`` hook if it has
        one, and a fresh meter for the epoch's bookkeeping."""
        self.distiller.train()
        set_epoch = getattr(self.distiller, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        return EpochMeter(self.device)

    def __call__(self, batch: Batch, meter: EpochMeter, *, init_stage: bool = False) -> dict[str, torch.Tensor]:
        """One step on ``batch`` and its device-side bookkeeping in ``meter``; returns the loss terms."""
        fields = batch_fields(batch)
        images, labels = fields.pop("images"), fields.pop("labels")
        optimizer = self.init_optimizer if init_stage else self.optimizer
        logits, losses = training_step(
            self.distiller, optimizer, images, labels, self.autocast, init_stage=init_stage, **fields
        )
        meter.add(losses, logits, labels)
        return losses


def build_training_step(
    student: StagedModel,
    teacher: StagedModel | None,
    *,
    terms: Sequence[tuple[str, dict]],
    ce_weight: float | None,
    schedule: Mapping[str, Any],
    training: Mapping[str, Any],
    seed: int,
    device: torch.device,
    data_facts: Mapping[str, Any] | None = None,
) -> TrainingStep:
    """The step of a run: the method's parts seeded apart from the student (``method-init``), all on
    ``device`` in the run's layout and compile mode, the RNG then seeded for training (``train``),
    SGD for the main stage and, for a two-stage method, for its init stage.

    The student's init is seeded by the caller (it depends only on architecture and seed); the
    teacher arrives on ``device`` with its weights (or, in the benchmark, calibrated random ones).
    ``data_facts`` (the training labels: CRD's memory) go to the methods that declare them; the init
    stage's learning rate is the methods' (FT's paraphraser: 0.01 as the CRD code), else the schedule's.
    """
    configure_backends(training, device)
    torch.manual_seed(derive_seed(seed, "method-init"))
    distiller = create_distiller(student, teacher, terms, ce_weight, data_facts=data_facts).to(device)
    prepare_for_device(distiller, training, device)
    torch.manual_seed(derive_seed(seed, "train"))
    optimizer = make_optimizer(distiller.trainable_parameters(), schedule, device)
    init_optimizer = None
    if distiller.init_epochs():
        init_schedule = {**schedule, "lr": distiller.init_learning_rate(schedule["lr"])}
        init_optimizer = make_optimizer(distiller.init_parameters(), init_schedule, device)
    autocast = autocast_for(training.get("precision", "fp32"), device)
    return TrainingStep(distiller, optimizer, init_optimizer, autocast, device)
