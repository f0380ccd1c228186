"""AB: Heo et al., "Knowledge Transfer via Distillation of Activation Boundaries Formed by Hidden
Neurons" (AAAI 2019).

Reference code: the CRD code (RepDistiller ``distiller_zoo/AB.py`` ``ABLoss``, the connector
``models/util.py`` ``Connector``, the init stage ``helper/pretrain.py`` ``init``, wiring in
``train_student.py`` / ``helper/loops.py`` with ``--distill abound -a 0 -b 1 --init_epochs 30``).

Features: every stage's pre-activation output (the code's ``preact=True`` ``feat[1:-1]``), teacher
and student. Each student map goes through a connector: nothing when channels and side are the
teacher's, else the code's ``ConvReg`` without its ReLU (conv + BN, sized as FitNet's). Per stage
``i`` of ``n``, the alternative L2 activation-boundary loss with margin ``m`` (1):
``sum((s + m)^2 [s > -m and t <= 0] + (s - m)^2 [s <= m and t > 0])``, weighted
``2^(i - n + 1)`` (the last stage 1, each earlier one half the next), over the batch size, times
3 / 1000; summed over stages.

Two stages, as the code: an init stage of ``init_epochs`` (30) epochs trains the student's feature
layers (stem and stages, the code's ``get_feat_modules()``, in train mode; the rest of the student
in eval mode) and the connectors on the AB loss alone (its SGD at the main learning rate, constant;
kdbench's loop gives the init stage the main schedule's SGD settings, as for FSP). Then the main
schedule with CE only: the code's main-stage AB loss is 0 (``loss_kd = 0``), so its ``-b 1``
multiplies nothing, and the connectors are unused. Defaults: weight (main-stage beta) 0,
init_weight 1, init_epochs 30, margin 1, CE weight 1.

Deliberate differences: none in effect. ``weight`` defaults to 0 rather than the script's inert
``-b 1`` (as FSP's), so the resolved config says what runs; a non-zero ``weight`` adds the AB loss
to the main stage as well (not in the reference). Connectors are sized from ``feature_info``
(``input_size`` 32, as the code's dummy batch) instead of a dummy forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.methods.connectors import ConvReg, conv_reg_unsupported
from kdbench.models.base import Features, StagedModel, StageInfo


@full_precision
def activation_boundary_loss(source: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """The code's ``criterion_alternative_l2``: squared margin violations where the teacher's neuron is
    off (``target <= 0``) and the student's is not below ``-margin``, or on and the student's not above."""
    teacher_off = (source > -margin) & (target <= 0)
    teacher_on = (source <= margin) & (target > 0)
    return ((source + margin) ** 2 * teacher_off + (source - margin) ** 2 * teacher_on).abs().sum()


def _connector_problem(teacher: Sequence[StageInfo], student: Sequence[StageInfo], input_size: int) -> str | None:
    if len(teacher) != len(student):
        return f"AB needs as many stages in teacher and student: {len(teacher) - 1} and {len(student) - 1}"
    for t, s in zip(teacher[1:], student[1:], strict=True):
        reason = conv_reg_unsupported(input_size // s.stride, input_size // t.stride)
        if reason is not None:
            return "AB's connector: " + reason
    return None


@METHODS.register("ab", aliases=("AB", "abound"))
class AB(DistillLoss):
    """Activation-boundary transfer in an init stage (see the module docstring)."""

    needs_feature_maps = True  # reads stage outputs as C x H x W maps

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        *,
        weight: float = 0.0,
        init_epochs: int = 30,
        init_weight: float = 1.0,
        margin: float = 1.0,
        input_size: int = 32,
    ):
        super().__init__(teacher, student, weight=weight)
        problems = self.parameter_problems({"init_epochs": init_epochs, "input_size": input_size})
        reason = None if problems else _connector_problem(self.teacher.feature_info, student.feature_info, input_size)
        if problems or reason:
            raise ValueError("; ".join(problems or [reason]))
        self.init_epoch_count = init_epochs
        self.init_weight = init_weight
        self.margin = margin
        self.connectors = nn.ModuleList()
        for s, t in zip(student.stage_info, self.teacher.stage_info, strict=True):
            s_size, t_size = input_size // s.stride, input_size // t.stride
            if s.channels == t.channels and s_size == t_size:
                self.connectors.append(nn.Identity())
            else:
                self.connectors.append(ConvReg(s.channels, s_size, t.channels, t_size, use_relu=False))
        count = len(self.connectors)
        self.stage_weights = [2.0 ** (i - count + 1) for i in range(count)]

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        problems = []
        for key, least in (("init_epochs", 0), ("input_size", 1)):
            value = params.get(key)
            if isinstance(value, int) and value < least:
                problems.append(f"ab.{key}: {value} is below {least}")
        return problems

    @classmethod
    def pair_not_applicable(
        cls, teacher: Sequence[StageInfo], student: Sequence[StageInfo], params: dict[str, Any]
    ) -> str | None:
        return _connector_problem(teacher, student, params.get("input_size", cls.parameter_defaults()["input_size"]))

    def ab_loss(self, student: Features, teacher: Features) -> torch.Tensor:
        batch = student.preact[0].shape[0]
        stages = zip(self.stage_weights, self.connectors, student.preact, teacher.preact, strict=True)
        return sum(
            w * activation_boundary_loss(connector(s), t, self.margin) / batch / 1000 * 3
            for w, connector, s, t in stages
        )

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.weight == 0:
            return {}  # the reference's main stage: CE only
        return {"ab": self.weight * self.ab_loss(student, teacher)}

    def init_epochs(self) -> int:
        return self.init_epoch_count

    def init_loss(self, student: Features, teacher: Features) -> dict[str, torch.Tensor]:
        return {"ab_init": self.init_weight * self.ab_loss(student, teacher)}
