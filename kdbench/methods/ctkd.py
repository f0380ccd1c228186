"""CTKD: Li et al., "Curriculum Temperature for Knowledge Distillation" (AAAI 2023).

Reference code: zhengli97/CTKD (``models/temp_global.py``, ``Global_T`` and the gradient-reversal
layer; ``helper/loops.py``, ``train_distill``; ``train_student.py``, ``CosineDecay``; the published
command in ``scripts/run_cifar_distill.sh``: ``--distill kd -r 0.1 -a 0.9 -b 0 --kd_T 4 --have_mlp 1
--mlp_name global --cosine_decay 1 --decay_max 0 --decay_min -1 --decay_loops 10``).

Features: the logits of both networks. KD (KL(teacher || student) of the softened distributions,
batch mean, times tau^2) whose temperature is learnt: tau = temperature_min + temperature_range *
sigmoid(theta), with theta one trainable scalar (initialised to 1, so tau starts at 1 + 20 *
sigmoid(1) = 15.6) that reaches the loss through a gradient-reversal layer: the forward pass is the
identity, the backward pass multiplies the gradient by -lambda, so the temperature is trained to
*increase* the distillation loss while the student decreases it. theta is in the optimizer with the
student (same lr, momentum and weight decay, as in the reference's ``trainable_list``).

Curriculum: lambda grows from 0 to ``reversal_max`` along a half cosine over the first
``curriculum_epochs`` epochs: at the 1-based epoch e, lambda = reversal_max * (1 - cos(pi * min(e, L)
/ L)) / 2 (the reference's ``CosineDecay(max_value=0, min_value=-1, num_loops=10)``, which returns
-lambda and the reversal layer multiplies the gradient by it); the training loop passes the epoch
through ``set_epoch``. theta is checkpointed with the run (it is a parameter of this term); lambda is
recomputed from the epoch on resume.

Loss = 0.1 * CE + 0.9 * KD(tau) by default (``-r 0.1 -a 0.9``). Defaults: weight 0.9, CE weight 0.1,
temperature_min 1 (``--t_start``), temperature_range 20 (``--t_end``), reversal_max 1 (minus
``--decay_min``), curriculum_epochs 10 (``--decay_loops``). ``logit_standardize: true`` z-scores both
logits first, as logit standardisation's ``CTKD/distiller_zoo/KD.py`` (``DistillKL_logit_stand``).

Deliberate differences: the KL takes the teacher's log-probabilities from ``log_softmax`` instead of
``kl_div``'s log of the probabilities (the same value up to rounding): the reference's gradient in
tau is NaN wherever a teacher probability underflows to 0 (a teacher with large logits, such as an
untrained one); theta is a 0-d parameter (the reference's has shape (1,)); only the
reference's global temperature (``--mlp_name global``) with the cosine curriculum is implemented, not
its instance-wise temperature or the linear curriculum; CTKD on top of other methods (its DKD, CRD
rows) is ``use: [ctkd, <method>]`` with the method's own fixed-temperature loss beside it, not the
learnt temperature inside that method.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.methods.logit_standardization import maybe_standardize
from kdbench.models.base import Features, StagedModel


@full_precision
def learnt_temperature_kd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: torch.Tensor
) -> torch.Tensor:
    """tau^2 * KL(softmax(z_T / tau) || softmax(z_S / tau)), batch mean, differentiable in tau.

    The teacher's log-probabilities come from ``log_softmax``: ``kl_div`` takes the log of the target
    probabilities, whose gradient is -inf (and the temperature's NaN) wherever a teacher probability
    underflows to 0, as it does for a teacher with large logits.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1).mean()
    return kl * temperature**2


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -strength (Ganin & Lempitsky's layer)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(strength)
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (strength,) = ctx.saved_tensors
        return -strength.to(grad.dtype) * grad, None


def reverse_gradient(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    return _ReverseGradient.apply(x, strength)


def reversal_strength(epoch: int, reversal_max: float, curriculum_epochs: int) -> float:
    """lambda at the 0-based ``epoch``: the reference's cosine curriculum at its 1-based epoch."""
    if curriculum_epochs <= 0:
        return reversal_max
    step = min(max(epoch + 1, 0), curriculum_epochs)
    return reversal_max * (1.0 - math.cos(math.pi * step / curriculum_epochs)) / 2.0


class GlobalTemperature(nn.Module):
    """One learnable temperature for the whole batch, bounded to [minimum, minimum + span]."""

    def __init__(self, minimum: float, span: float):
        super().__init__()
        self.theta = nn.Parameter(torch.ones(()))
        self.minimum, self.span = minimum, span

    def forward(self, strength: torch.Tensor) -> torch.Tensor:
        return self.minimum + self.span * torch.sigmoid(reverse_gradient(self.theta, strength))


@METHODS.register("ctkd", aliases=("CTKD", "curriculum_temperature"))
class CTKD(DistillLoss):
    """KD with a learnt, adversarially trained temperature (see the module docstring)."""

    default_ce_weight = 0.1

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        *,
        weight: float = 0.9,
        temperature_min: float = 1.0,
        temperature_range: float = 20.0,
        reversal_max: float = 1.0,
        curriculum_epochs: int = 10,
        logit_standardize: bool = False,
    ):
        super().__init__(teacher, student, weight=weight)
        problems = self.parameter_problems(
            dict(
                temperature_min=temperature_min,
                temperature_range=temperature_range,
                curriculum_epochs=curriculum_epochs,
            )
        )
        if problems:
            raise ValueError("; ".join(problems))
        self.temperature = GlobalTemperature(temperature_min, temperature_range)
        self.reversal_max, self.curriculum_epochs = reversal_max, curriculum_epochs
        self.logit_standardize = logit_standardize
        # lambda of the current epoch: recomputed from the epoch (set_epoch), so not checkpointed
        strength = reversal_strength(0, reversal_max, curriculum_epochs)
        self.register_buffer("reversal", torch.tensor(strength), persistent=False)

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        problems = []
        minimum, span = params.get("temperature_min"), params.get("temperature_range")
        if isinstance(minimum, (int, float)) and not isinstance(minimum, bool) and minimum <= 0:
            problems.append(f"ctkd.temperature_min: {minimum} must be positive")
        if isinstance(span, (int, float)) and not isinstance(span, bool) and span < 0:
            problems.append(f"ctkd.temperature_range: {span} must be 0 or more")
        epochs = params.get("curriculum_epochs")
        if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs < 0:
            problems.append(f"ctkd.curriculum_epochs: {epochs} must be 0 (full reversal at once) or more")
        return problems

    def set_epoch(self, epoch: int) -> None:
        self.reversal.fill_(reversal_strength(epoch, self.reversal_max, self.curriculum_epochs))

    def current_temperature(self) -> torch.Tensor:
        return self.temperature(self.reversal)

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        student_logits, teacher_logits = maybe_standardize(student.logits, teacher.logits, self.logit_standardize)
        temperature = self.current_temperature()
        return {"ctkd": self.weight * learnt_temperature_kd(student_logits, teacher_logits, temperature)}
