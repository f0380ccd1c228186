"""FitNet: Romero et al., "FitNets: Hints for Thin Deep Nets" (ICLR 2015).

Reference code: the CRD code (RepDistiller ``distiller_zoo/FitNet.py`` ``HintLoss``, the regressor
``models/util.py`` ``ConvReg``, wiring in ``train_student.py`` / ``helper/loops.py`` with
``--distill hint --hint_layer 2 -a 0 -b 100``).

Features: the CRD code's ``feat[hint_layer]`` where ``feat = [stem, stage 1, ..., stage n, pooled]``;
the default ``hint_layer=2`` is the output of stage 2. The student map goes through a trainable
``ConvReg`` (conv + BN + ReLU, sized from the two maps) and is compared with the teacher's map by
MSE (mean over every element). Defaults: weight (beta) 100, CE weight 1, one stage (hint loss
trained jointly with CE, as the CRD code does).

The original two-stage FitNet is an option: ``init_epochs > 0`` first trains the student's stem and
stages up to the hint plus the regressor on the hint loss alone (times ``init_weight``); the main
schedule then continues with CE + ``weight`` * hint. The paper's second stage is KD without hints:
``use: [kd, fitnet]`` with ``fitnet: {init_epochs: N, weight: 0}``.

Deliberate differences: the regressor is sized from ``feature_info`` instead of a dummy forward
pass; the spatial side of each map is ``input_size // stride`` (``input_size`` 32 as the CRD code's
dummy batch), which only matters when the two sides differ by a factor other than 1 or 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss
from kdbench.methods.connectors import ConvReg, conv_reg_unsupported
from kdbench.models.base import Features, StagedModel, StageInfo


def _hint_problem(
    teacher: Sequence[StageInfo], student: Sequence[StageInfo], hint_layer: int, input_size: int
) -> str | None:
    """Why this pair cannot take a hint at ``hint_layer``, or None."""
    last = min(len(teacher), len(student)) - 1
    if isinstance(hint_layer, bool) or not isinstance(hint_layer, int) or not 0 <= hint_layer <= last:
        return f"fitnet: hint_layer {hint_layer!r} is not a feature map of this pair (0 = stem ... {last} = last stage)"
    return conv_reg_unsupported(input_size // student[hint_layer].stride, input_size // teacher[hint_layer].stride)


@METHODS.register("fitnet", aliases=("FitNet", "FitNets", "hint"))
class FitNet(DistillLoss):
    """Hint loss on one intermediate map through a trainable regressor (see the module docstring)."""

    needs_feature_maps = True  # reads stage outputs as C x H x W maps

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        *,
        weight: float = 100.0,
        hint_layer: int = 2,
        init_epochs: int = 0,
        init_weight: float = 1.0,
        input_size: int = 32,
    ):
        super().__init__(teacher, student, weight=weight)
        problems = self.parameter_problems(dict(hint_layer=hint_layer, init_epochs=init_epochs, input_size=input_size))
        if not problems:
            hint_problem = _hint_problem(teacher.feature_info, student.feature_info, hint_layer, input_size)
            problems = [hint_problem] if hint_problem else []
        if problems:
            raise ValueError("; ".join(problems))
        self.hint_layer = hint_layer
        self.init_epoch_count = init_epochs
        self.init_weight = init_weight
        s_info, t_info = student.feature_info[hint_layer], teacher.feature_info[hint_layer]
        self.regressor = ConvReg(
            s_info.channels, input_size // s_info.stride, t_info.channels, input_size // t_info.stride
        )

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        allowed = {
            "hint_layer": (0, "0 = stem, 1.. = stages"),
            "init_epochs": (0, "0 = one-stage FitNet"),
            "input_size": (1, "a positive image side"),
        }
        problems = []
        for key, (least, meaning) in allowed.items():
            value = params.get(key)
            if isinstance(value, int) and value < least:
                problems.append(f"fitnet.{key}: {value} is below {least} ({meaning})")
        return problems

    @classmethod
    def pair_not_applicable(
        cls, teacher: Sequence[StageInfo], student: Sequence[StageInfo], params: dict[str, Any]
    ) -> str | None:
        defaults = cls.parameter_defaults()
        hint_layer = params.get("hint_layer", defaults["hint_layer"])
        return _hint_problem(teacher, student, hint_layer, params.get("input_size", defaults["input_size"]))

    def hint_loss(self, student: Features, teacher: Features) -> torch.Tensor:
        student_map = ([student.stem, *student.stages])[self.hint_layer]
        teacher_map = ([teacher.stem, *teacher.stages])[self.hint_layer]
        return F.mse_loss(self.regressor(student_map), teacher_map)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.weight == 0:
            return {}  # e.g. the original FitNet's second stage: nothing to compute
        return {"fitnet": self.weight * self.hint_loss(student, teacher)}

    def init_epochs(self) -> int:
        return self.init_epoch_count

    def init_loss(self, student: Features, teacher: Features) -> dict[str, torch.Tensor]:
        return {"fitnet_init": self.init_weight * self.hint_loss(student, teacher)}

    def init_modules(self, student: StagedModel) -> list[nn.Module]:
        """Stage 1 of the original FitNet: the student up to the hint layer, and the regressor."""
        return [student.stem, *student.stages[: self.hint_layer], self.regressor]
