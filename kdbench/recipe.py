"""Training recipes beyond the CRD one: optimizer, lr schedule with warm-up, validation split, model
selection and early stopping. Every default is today's CRD recipe, so a run that sets none of these
keys trains exactly as before.

Schedule keys (beside ``epochs``, ``batch_size``, ``lr``, ``milestones``, ``lr_decay``, ``momentum``,
``weight_decay``, ``nesterov``):

- ``optimizer``: ``sgd`` (default; momentum, nesterov, weight_decay as today), ``adam`` (L2 weight
  decay added to the gradient, as ``torch.optim.Adam``) or ``adamw`` (decoupled weight decay), both
  with ``betas`` (default [0.9, 0.999]) and ``eps`` (default 1e-8, torch's; Keras's Adam, which the
  course project's MNIST code used, has 1e-7).
- ``lr_schedule``: ``multistep`` (default: lr times ``lr_decay`` at each of ``milestones``, epochs
  counted from the start), ``cosine`` (half a cosine from lr to 0 over the epochs after warm-up) or
  ``constant``; ``warmup_epochs`` (default 0): the lr grows linearly over the first epochs, epoch e
  (0-based) training at lr * (e + 1) / warmup_epochs, then the schedule proper. The lr changes once
  per epoch, as the CRD recipe's steps do.

Run keys for model selection (``validation``, ``selection``, ``early_stopping``):

- ``validation: {fraction: f, seed: s}`` holds out a stratified fraction f of the training split
  (seed s, default 0; the same images for every run of a suite, whatever the run's seed), evaluated
  after every epoch, never trained on.
- ``selection: {metric: val_loss | val_top1 | val_weighted_f1, mode: min | max}`` picks the epoch
  whose validation metric is best (the first such epoch on ties); its weights become ``model.pt``
  (students of a selected teacher distil from the selected weights) and the result records the test
  metrics of that epoch beside the last epoch's. ``mode`` defaults to min for losses, max otherwise.
- ``early_stopping: {patience: p}`` ends training after p epochs without a better selection metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: suites are checked without it
    import torch

    from kdbench.data.base import Split

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("multistep", "cosine", "constant")
SELECTION_METRICS = ("val_loss", "val_top1", "val_weighted_f1")
SELECTION_MODES = ("min", "max")

#: the schedule keys this module adds, at the values that reproduce the CRD recipe
SCHEDULE_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd",
    "lr_schedule": "multistep",
    "warmup_epochs": 0,
    "betas": [0.9, 0.999],
    "eps": 1e-8,
}


def make_optimizer(
    parameters: Iterable[torch.nn.Parameter], schedule: Mapping[str, Any], device: torch.device
) -> torch.optim.Optimizer:
    """The schedule's optimizer over ``parameters`` (frozen ones, without gradients, are never updated)."""
    import torch

    name = schedule.get("optimizer", "sgd")
    foreach = device.type == "cuda"  # the multi-tensor update on CUDA, where it saves launches
    if name == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=schedule["lr"],
            momentum=schedule["momentum"],
            weight_decay=schedule["weight_decay"],
            nesterov=schedule["nesterov"],
            foreach=foreach,
        )
    betas = tuple(float(b) for b in schedule.get("betas", SCHEDULE_DEFAULTS["betas"]))
    options = dict(lr=schedule["lr"], betas=betas, eps=float(schedule.get("eps", 1e-8)), foreach=foreach)
    if name == "adam":
        return torch.optim.Adam(parameters, weight_decay=schedule["weight_decay"], **options)
    if name == "adamw":
        return torch.optim.AdamW(parameters, weight_decay=schedule["weight_decay"], **options)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def lr_factor(epoch: int, schedule: Mapping[str, Any]) -> float:
    """The lr of 0-based ``epoch`` as a fraction of ``schedule['lr']``."""
    warmup = int(schedule.get("warmup_epochs", 0))
    if epoch < warmup:
        return (epoch + 1) / warmup
    kind = schedule.get("lr_schedule", "multistep")
    if kind == "multistep":
        return schedule["lr_decay"] ** sum(1 for milestone in schedule["milestones"] if epoch >= milestone)
    if kind == "cosine":
        span = max(1, schedule["epochs"] - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / span))
    if kind == "constant":
        return 1.0
    raise ValueError(f"unknown lr_schedule {kind!r}; choose one of {', '.join(LR_SCHEDULES)}")


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: Mapping[str, Any]) -> Any:
    """Stepped once per epoch. The CRD recipe (multistep, no warm-up) stays torch's ``MultiStepLR``,
    so its runs keep their arithmetic (and their checkpoints) to the bit; the rest is one LambdaLR."""
    import torch

    if schedule.get("lr_schedule", "multistep") == "multistep" and not schedule.get("warmup_epochs", 0):
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, schedule["milestones"], gamma=schedule["lr_decay"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(epoch, schedule))


def schedule_problems(schedule: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for each bad value of the keys above."""
    problems = []
    if schedule.get("optimizer", "sgd") not in OPTIMIZERS:
        problems.append(("optimizer", f"{schedule['optimizer']!r} is not one of {', '.join(OPTIMIZERS)}"))
    if schedule.get("lr_schedule", "multistep") not in LR_SCHEDULES:
        problems.append(("lr_schedule", f"{schedule['lr_schedule']!r} is not one of {', '.join(LR_SCHEDULES)}"))
    warmup = schedule.get("warmup_epochs", 0)
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        problems.append(("warmup_epochs", f"expected a whole number of epochs >= 0, got {warmup!r}"))
    elif warmup >= schedule.get("epochs", warmup + 1):
        problems.append(("warmup_epochs", f"{warmup} leaves no epoch after the warm-up ({schedule['epochs']} epochs)"))
    betas = schedule.get("betas", SCHEDULE_DEFAULTS["betas"])
    if not (isinstance(betas, (list, tuple)) and len(betas) == 2 and all(_in_unit(b) for b in betas)):
        problems.append(("betas", f"expected two numbers in [0, 1), got {betas!r}"))
    eps = schedule.get("eps", 1e-8)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
        problems.append(("eps", f"expected a positive number, got {eps!r}"))
    return problems


def _in_unit(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1


# -- validation split and selection --------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which validation metric picks the kept epoch, and how long to wait for a better one."""

    metric: str = "val_loss"
    mode: str = "min"
    patience: int | None = None  # early stopping; None trains every epoch

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best


def selection_problems(validation: Any, selection: Any, early_stopping: Any) -> list[tuple[str, str]]:
    """(key, message) for each bad value of the validation, selection and early_stopping sections."""
    problems = []
    if validation is not None:
        fraction = validation.get("fraction") if isinstance(validation, Mapping) else None
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1:
            problems.append(("validation.fraction", f"expected a fraction between 0 and 1, got {fraction!r}"))
        unknown = sorted(set(validation) - {"fraction", "seed"}) if isinstance(validation, Mapping) else []
        problems += [(f"validation.{key}", "unknown key; valid keys: fraction, seed") for key in unknown]
        seed = validation.get("seed", 0) if isinstance(validation, Mapping) else 0
        if not isinstance(seed, int) or isinstance(seed, bool):
            problems.append(("validation.seed", f"expected an integer, got {seed!r}"))
    if selection is not None:
        if validation is None:
            problems.append(
                ("selection", "needs a validation split (validation: {fraction: 0.1}): never select on test")
            )
        metric = selection.get("metric") if isinstance(selection, Mapping) else selection
        if metric not in SELECTION_METRICS:
            problems.append(("selection.metric", f"{metric!r} is not one of {', '.join(SELECTION_METRICS)}"))
        mode = selection.get("mode") if isinstance(selection, Mapping) else None
        if mode is not None and mode not in SELECTION_MODES:
            problems.append(("selection.mode", f"{mode!r} is not one of min, max"))
    if early_stopping is not None:
        if selection is None:
            problems.append(("early_stopping", "needs a selection metric to wait for (selection: {metric: val_loss})"))
        patience = early_stopping.get("patience") if isinstance(early_stopping, Mapping) else None
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            problems.append(("early_stopping.patience", f"expected a positive number of epochs, got {patience!r}"))
    return problems


def resolve_selection(
    selection: Mapping[str, Any] | None, early_stopping: Mapping[str, Any] | None
) -> Selection | None:
    """The checked sections as a ``Selection`` (mode defaulting to min for losses, max otherwise)."""
    if selection is None:
        return None
    metric = selection["metric"]
    mode = selection.get("mode") or ("min" if metric.endswith("loss") else "max")
    return Selection(metric, mode, None if early_stopping is None else int(early_stopping["patience"]))


def split_validation(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(train without the held-out images, the held-out images): a stratified ``fraction`` of each class,
    drawn with its own ``seed`` so that every run of a suite holds out the same images."""
    import numpy as np
    import torch

    from kdbench.data.base import Split
    from kdbench.data.digits import stratified_split

    kept, held_out = stratified_split(train.labels.numpy(), fraction, seed)
    if len(held_out) == 0 or len(kept) == 0:
        raise ValueError(f"validation fraction {fraction} of {len(train)} images leaves an empty split")
    kept_index, held_index = torch.from_numpy(kept.astype(np.int64)), torch.from_numpy(held_out.astype(np.int64))
    return Split(train.images[kept_index], train.labels[kept_index]), Split(
        train.images[held_index], train.labels[held_index]
    )


class Selector:
    """Tracks the best validation epoch and the early-stopping count; checkpointed for exact resume."""

    def __init__(self, selection: Selection):
        self.selection = selection
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epochs_since_best = 0

    def update(self, epoch: int, value: float) -> bool:
        """Record ``epoch``'s (1-based) metric; True when it is the new selected epoch."""
        if self.selection.better(value, self.best):
            self.best, self.best_epoch, self.epochs_since_best = value, epoch, 0
            return True
        self.epochs_since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        patience = self.selection.patience
        return patience is not None and self.epochs_since_best >= patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "epochs_since_best": self.epochs_since_best}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.best_epoch, self.epochs_since_best = (
            state["best"],
            state["best_epoch"],
            state["epochs_since_best"],
        )
