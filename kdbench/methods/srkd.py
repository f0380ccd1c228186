"""SRKD: Chen & Sun, "Design and Simulation of Stage Reset Knowledge Distillation Method" (2024).

Reference: the paper only (restated in docs/paper-srkd.md); there is no public code, so this file
is the reference implementation and every choice the paper leaves open is a parameter, listed here.

Features: the stem output F_0 and every stage output F_i of the stage view (``Features.stages``,
the CRD code's ``feat[1:-1]``), and the teacher's stages run one at a time
(``teacher.forward_stage``).

Stage reset: for each reset stage i (1-based), the student's stage runs as usual,
F_i^S = S_i^S(F_{i-1}^S), and the frozen teacher's stage i is run on the *student's* input to that
stage, F_i^T = S_i^T(F_{i-1}^S). The per-stage loss is the MSE (mean over every element) between
A_i(F_i^S) and F_i^T, where A_i is a trainable 1x1 conv + BN on the student side
(``StageAdapter``); when the two maps differ in height/width the larger is average-pooled to the
smaller's size (parameter-free, so also allowed on the teacher side). The term is
``weight * sum over stages``. The paper's SRKD row is ``use: [kd, srkd]``, its eq. 9
CE + KD + lambda * SRKD with lambda = 0.1; kdbench's default CE weight for that combination is
KD's 0.1 (with KD's 0.9, the CRD recipe behind the paper's KD row); ``ce_weight: 1`` and
``kd: {weight: 1}`` read eq. 9 literally.

Parameters and defaults:

- ``weight`` 0.1 (the paper's lambda).
- ``stages`` None (= ``"all"``): which stage outputs carry a loss. None or ``"all"``, an int k
  (the last k stages), or a list of 1-based stage numbers (``[2, 3]``).
- ``reset_stages`` None (= ``"all"``): which of those stages are reset. None or ``"all"``,
  ``"none"`` or 0, an int k (the last k of ``stages``: Table 4 adds reset stages from the last
  one backwards, so ``reset_stages: 2`` is its row "stages 3, 2"), or a list of stage numbers.
  A distilled stage that is not reset compares A_i(F_i^S) with the teacher's own image-side
  F_i^T, a multi-stage FitNet hint; so ``reset_stages: 0`` is exactly M-FitNet (Table 4:
  "Number = 0 is M-FitNet"; ``mfitnet`` is this class with no reset stage).
- ``grad_through_teacher`` False: F_i^T is a detached target and the teacher stage runs under
  ``no_grad``. True lets the loss's gradient flow through the frozen teacher stage into F_{i-1}^S
  (and so into the student's earlier stages); the teacher's parameters stay frozen
  (``requires_grad`` False) and it stays in eval mode, so its BN statistics never move.
- No teacher-side trainable parts: a trainable adapter on both sides can collapse the L2 loss to
  zero by shrinking both outputs.

Width bridge: when the student's stage input F_{i-1}^S has other channels than the teacher's
stage i expects (WRN-40-2 -> WRN-40-1 at stages 2 and 3), the teacher stage is fed
A_{i-1}(F_{i-1}^S), the previous stage's adapter output. Why: A_{i-1} is trained to map the
student's stage i-1 output onto the teacher's F_{i-1}, which is exactly the space teacher stage i
reads from, and it adds no new module. A_{i-1} is then needed even if stage i-1 carries no loss of
its own (always so for i = 1: A_0 sits on the stem output); such a bridge-only adapter gets an
image-side hint MSE(A_{i-1}(F_{i-1}^S), F_{i-1}^T) added to the term so that it is trained at all
(with a detached target nothing else would train it). In the paper's pairs only WRN-40-2 ->
WRN-40-1 is bridged, and there A_1 and A_2 carry their own stage losses anyway.

Cost: each reset stage runs one teacher stage per step, on top of the teacher's image-side forward
pass (needed for KD and for non-reset hints): the paper's "almost twice" the teacher.

Deliberate choices where the paper is silent: the ones above, plus MSE's mean reduction per stage,
PyTorch's default initialisation of the adapters (conv without bias, BN after it), and the stage
view's outputs as F_i (post-activation for ResNet and VGG, the raw residual sum for the
pre-activation WRN, as the CRD code's feature lists).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss
from kdbench.methods.connectors import StageAdapter, match_spatial
from kdbench.models.base import Features, StagedModel, StageInfo

StageSelection = str | int | Sequence[int] | None


class StageOutOfRange(ValueError):
    """A well-formed stage selection that this pair does not have (the pair is NA, not the suite wrong)."""


def select_stages(value: StageSelection, candidates: Sequence[int], key: str) -> list[int]:
    """Resolve None or ``"all"``, ``"none"``, a count of trailing stages, or a list of 1-based stage numbers.

    Raises ``ValueError`` naming ``key`` for a malformed value, ``StageOutOfRange`` for a stage or
    count this pair does not have.
    """
    malformed = f"{key}: {value!r} is not a stage selection; use 'all', 'none', a count, or a list of stage numbers"
    if value is None:
        return list(candidates)
    if isinstance(value, str):
        if value.lower() not in ("all", "none"):
            raise ValueError(malformed)
        return list(candidates) if value.lower() == "all" else []
    if isinstance(value, bool):
        raise ValueError(malformed)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(malformed)
        if value > len(candidates):
            raise StageOutOfRange(f"{key}: count {value} exceeds the {len(candidates)} stages {list(candidates)}")
        return list(candidates[len(candidates) - value :])
    if not isinstance(value, Sequence) or any(isinstance(s, bool) or not isinstance(s, int) for s in value):
        raise ValueError(malformed)
    chosen = sorted(set(value))
    if any(s < 1 for s in chosen):
        raise ValueError(f"{key}: stages are numbered from 1 (F_0 is the stem), got {list(value)}")
    outside = [s for s in chosen if s not in candidates]
    if outside:
        raise StageOutOfRange(f"{key}: stage(s) {outside} not among {list(candidates)}")
    return chosen


def _stage_pair_problem(teacher: Sequence[StageInfo], student: Sequence[StageInfo], name: str) -> str | None:
    if len(teacher) != len(student):
        return f"{name} pairs stage i with stage i: teacher has {len(teacher) - 1} stages, student {len(student) - 1}"
    return None


class StageHints(DistillLoss):
    """Per-stage hints through student-side 1x1 conv + BN adapters; reset stages read the teacher's
    stage run on the student's input (SRKD), the others the teacher's own features (M-FitNet)."""

    loss_name = "srkd"

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        *,
        weight: float,
        stages: StageSelection,
        reset_stages: StageSelection,
        grad_through_teacher: bool,
    ):
        super().__init__(teacher, student, weight=weight)
        teacher_info, student_info = self.teacher.feature_info, student.feature_info
        problem = _stage_pair_problem(teacher_info, student_info, self.loss_name)
        if problem is not None:
            raise ValueError(problem)
        all_stages = list(range(1, len(student_info)))
        self.stages = select_stages(stages, all_stages, f"{self.loss_name}.stages")
        self.reset_stages = select_stages(reset_stages, self.stages, f"{self.loss_name}.reset_stages")
        self.grad_through_teacher = grad_through_teacher
        # Stage inputs whose width differs from the teacher's: bridged through the previous adapter.
        self.bridged_inputs = [
            i - 1 for i in self.reset_stages if student_info[i - 1].channels != teacher_info[i - 1].channels
        ]
        # Maps that get an adapter and a loss: the distilled stages, plus any bridge-only adapter.
        self.hinted_maps = sorted(set(self.stages) | set(self.bridged_inputs))
        self.adapters = nn.ModuleDict(
            {str(j): StageAdapter(student_info[j].channels, teacher_info[j].channels) for j in self.hinted_maps}
        )

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        problems = []
        for key in ("stages", "reset_stages"):
            if key in params:
                try:  # the form only: a large enough network has every stage
                    select_stages(params[key], list(range(1, 1000)), f"{cls.loss_name}.{key}")
                except ValueError as error:
                    problems.append(str(error))
        return problems

    @classmethod
    def pair_not_applicable(
        cls, teacher: Sequence[StageInfo], student: Sequence[StageInfo], params: dict[str, Any]
    ) -> str | None:
        problem = _stage_pair_problem(teacher, student, cls.loss_name)
        if problem is not None:
            return problem
        defaults = cls.parameter_defaults()
        try:
            all_stages = list(range(1, len(student)))
            chosen = select_stages(params.get("stages", defaults["stages"]), all_stages, f"{cls.loss_name}.stages")
            if "reset_stages" in defaults:
                reset = params.get("reset_stages", defaults["reset_stages"])
                select_stages(reset, chosen, f"{cls.loss_name}.reset_stages")
        except StageOutOfRange as error:
            return str(error)
        return None

    def reset_target(self, stage: int, student_inputs: torch.Tensor) -> torch.Tensor:
        """F_stage^T = teacher stage ``stage`` (1-based) run on the student's (bridged) stage input."""
        if self.grad_through_teacher:
            return self.teacher.forward_stage(stage - 1, student_inputs)
        with torch.no_grad():
            return self.teacher.forward_stage(stage - 1, student_inputs)

    def stage_losses(self, student: Features, teacher: Features | None) -> dict[int, torch.Tensor]:
        """MSE per hinted map index (0 = stem), before the weight."""
        student_maps = [student.stem, *student.stages]
        adapted = {j: self.adapters[str(j)](student_maps[j]) for j in self.hinted_maps}
        losses = {}
        for j in self.hinted_maps:
            if j in self.reset_stages:
                stage_input = adapted[j - 1] if j - 1 in self.bridged_inputs else student_maps[j - 1]
                target = self.reset_target(j, stage_input)
            else:
                if teacher is None:
                    raise RuntimeError(f"{self.loss_name} needs the teacher's features for stage {j}")
                target = ([teacher.stem, *teacher.stages])[j]
            prediction, target = match_spatial(adapted[j], target)
            losses[j] = F.mse_loss(prediction, target)
        return losses

    def forward(self, student: Features, teacher: Features | None, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.loss_name: self.weight * sum(self.stage_losses(student, teacher).values())}


@METHODS.register("srkd", aliases=("SRKD", "stage_reset", "stage-reset"))
class SRKD(StageHints):
    """Stage reset KD (see the module docstring)."""

    needs_feature_maps = True  # reads stage outputs as C x H x W maps

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        *,
        weight: float = 0.1,
        stages: StageSelection = None,
        reset_stages: StageSelection = None,
        grad_through_teacher: bool = False,
    ):
        super().__init__(
            teacher,
            student,
            weight=weight,
            stages=stages,
            reset_stages=reset_stages,
            grad_through_teacher=grad_through_teacher,
        )
