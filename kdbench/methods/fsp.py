"""FSP: Yim et al., "A Gift from Knowledge Distillation: Fast Optimization, Network Minimization and
Transfer Learning" (CVPR 2017).

Reference code: the CRD code (RepDistiller ``distiller_zoo/FSP.py`` ``FSP``, the init stage in
``helper/pretrain.py`` ``init``, wiring in ``train_student.py`` / ``helper/loops.py`` with
``--distill fsp -a 0 -b 50 --init_epochs 30``).

Features: the stem output and every stage output (the CRD code's ``feat[:-1]``). For each pair of
consecutive maps (bottom, top), the larger average-pooled to the smaller's size, the FSP matrix
``G[c_top, c_bottom] = mean over positions of top * bottom``; per pair, loss = mean squared
difference of the student's and the teacher's matrices; summed over pairs. It needs every
compared map to have the same channels in teacher and student (and as many maps): otherwise the
pair is not applicable (NA), as the CRD code refuses it.

Two stages, as the CRD code: first an init stage of ``init_epochs`` (30) epochs where only the
student's feature layers (stem and stages; the CRD code's ``get_feat_modules()``, in train mode,
the rest of the student in eval mode) train on the FSP loss alone. The CRD code gives that stage
its own SGD optimizer (lr = the main learning rate 0.05, constant, momentum 0.9, weight decay
5e-4, fresh momentum); kdbench's loop uses the main schedule's SGD settings the same way. Then the
main schedule with CE only: the CRD code's main-stage FSP loss is 0, so its published beta of 50
multiplies nothing, and its init-stage loss is the unweighted sum. Defaults here reproduce that:
weight (main-stage beta) 0, init_weight 1, init_epochs 30, CE weight 1.

Deliberate differences: none in effect. ``weight`` defaults to 0 rather than the script's inert
``-b 50``, so the resolved config says what runs; a non-zero ``weight`` adds the FSP loss to the
main stage as well (not in the reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.methods.connectors import match_spatial
from kdbench.models.base import Features, StagedModel, StageInfo


def fsp_matrices(maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One (batch, C_top, C_bottom) flow matrix per pair of consecutive maps."""
    matrices = []
    for bottom, top in zip(maps[:-1], maps[1:], strict=False):
        bottom, top = match_spatial(bottom, top)
        matrices.append(torch.einsum("bthw,bchw->btc", top, bottom) / (top.shape[2] * top.shape[3]))
    return matrices


@full_precision
def fsp_loss(student_maps: Sequence[torch.Tensor], teacher_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    pairs = zip(fsp_matrices(student_maps), fsp_matrices(teacher_maps), strict=True)
    return sum((s - t).pow(2).mean() for s, t in pairs)


@METHODS.register("fsp", aliases=("FSP", "flow"))
class FSP(DistillLoss):
    """Flow-of-solution-procedure matrices, trained in an init stage (see the module docstring)."""

    needs_feature_maps = True  # reads stage outputs as C x H x W maps

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        *,
        weight: float = 0.0,
        init_epochs: int = 30,
        init_weight: float = 1.0,
    ):
        super().__init__(teacher, student, weight=weight)
        reason = self.not_applicable(self.teacher.feature_info, student.feature_info, {})
        if reason is not None:
            raise ValueError(reason)
        problems = self.parameter_problems({"init_epochs": init_epochs})
        if problems:
            raise ValueError("; ".join(problems))
        self.init_epoch_count = init_epochs
        self.init_weight = init_weight

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        value = params.get("init_epochs")
        if isinstance(value, int) and value < 0:
            return [f"fsp.init_epochs: {params['init_epochs']} is negative (0 = no init stage)"]
        return []

    @classmethod
    def pair_not_applicable(
        cls, teacher: Sequence[StageInfo], student: Sequence[StageInfo], params: dict[str, Any]
    ) -> str | None:
        teacher_channels = [info.channels for info in teacher]
        student_channels = [info.channels for info in student]
        if teacher_channels != student_channels:
            return (
                f"FSP needs equal channels at the stem and every stage: teacher {teacher_channels}, "
                f"student {student_channels}"
            )
        return None

    @staticmethod
    def _loss(student: Features, teacher: Features) -> torch.Tensor:
        return fsp_loss([student.stem, *student.stages], [teacher.stem, *teacher.stages])

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.weight == 0:
            return {}  # the reference's main stage: CE only
        return {"fsp": self.weight * self._loss(student, teacher)}

    def init_epochs(self) -> int:
        return self.init_epoch_count

    def init_loss(self, student: Features, teacher: Features) -> dict[str, torch.Tensor]:
        return {"fsp_init": self.init_weight * self._loss(student, teacher)}
