"""kdbench's path: the training step that ``kdbench.train`` builds, fed by the device-resident loader."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from kdbench.bench.workload import Workload, build_models, timing_loader
from kdbench.data.base import Split
from kdbench.step import build_training_step, derive_seed
from kdbench.suite import SCHEDULE_PRESETS


class KdbenchPath:
    """What the training loop runs per batch: ``kdbench.step.build_training_step`` (distiller, SGD,
    autocast, channels_last, compile) and its ``EpochMeter``, on the ``tensor`` loader with crop + flip.

    The teacher has random weights with calibrated BN statistics (a trained one costs the same), the
    optimizer the CRD schedule's SGD (its values do not change the cost).
    """

    def __init__(self, work: Workload, split: Split, seed: int, device: torch.device | str):
        self.device = device = torch.device(device)
        student, teacher = build_models(work, seed, device)
        training = work.training
        self.training_step = build_training_step(
            student,
            teacher,
            terms=work.terms,
            ce_weight=work.ce_weight,
            schedule=SCHEDULE_PRESETS["crd"],
            training=training,
            seed=seed,
            device=device,
        )
        self.distiller = self.training_step.distiller
        self.loader = timing_loader(split, work, device, train=True, seed=derive_seed(seed, "data"))
        self.init_epochs = self.training_step.init_epochs
        self.meter = self.training_step.begin_epoch(0)  # one meter for all windows: it counts diverging steps

    @property
    def nonfinite_steps(self) -> int:
        """Steps with a non-finite loss (random data and teacher may diverge; the timing goes on)."""
        return int(self.meter.nonfinite_steps.item())

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.loader.epoch(epoch))

    def step(self, *batch: torch.Tensor) -> torch.Tensor:
        """One training step and the loop's bookkeeping after it (on the device, no host sync); the loss."""
        losses = self.training_step(batch, self.meter)
        return sum(losses.values()).detach()  # a tensor: reading it would sync the device
