"""FT: Kim et al., "Paraphrasing Complex Network: Network Compression via Factor Transfer" (NeurIPS 2018).

Reference code: the CRD code (RepDistiller ``distiller_zoo/FT.py`` ``FactorTransfer``, the
``Paraphraser`` and ``Translator`` of ``models/util.py``, the init stage ``helper/pretrain.py``
``init``, wiring in ``train_student.py`` / ``helper/loops.py`` with ``--distill factor -a 0 -b 200
--init_epochs 30``).

Features: the last stage output (the code's ``feat[-2]``) of teacher and student. The paraphraser
(rate k = 0.5, no BN) encodes the teacher's map with three 3x3 convs (C -> C -> C/2 -> C/2, each
followed by LeakyReLU 0.1) and decodes it back with three 3x3 transposed convs; the translator
(k = 0.5, with BN) encodes the student's map the same way to the teacher's C/2 channels. The factor
of a map is its channel mean of squares, flattened and L2-normalised per sample (after the larger
map is average-pooled to the other's side); loss = mean |factor(translator) - factor(paraphraser)|.

Two stages, as the code: an init stage of ``init_epochs`` (30) epochs trains the paraphraser
alone to reconstruct the teacher's map (MSE; the student is not trained, in eval mode), with its
own SGD at lr 0.01 when the student is a CIFAR ResNet or WRN and the main learning rate otherwise
(``init_lr`` overrides; momentum and weight decay of the main schedule, constant lr). Then the main
schedule: CE + 200 * factor loss, the translator training with the student and the paraphraser
frozen (the code leaves it out of the optimizer and in eval mode: here its factor is computed
without gradient, so SGD never touches it). Defaults: weight (beta) 200, init_epochs 30,
init_weight 1, init_lr None (the code's rule above), CE weight 1.

Deliberate differences: none in effect. The paraphraser stays in the main optimizer's parameter
list, but with no gradient SGD skips it entirely (no update, no weight decay, no momentum).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.methods.connectors import match_spatial
from kdbench.models.base import Features, StagedModel
from kdbench.models.resnet import CifarResNet
from kdbench.models.wrn import WideResNet

#: the code's init-stage learning rate for CIFAR ResNet and WRN students (helper/pretrain.py)
RESNET_INIT_LR = 0.01


def _conv_block(
    channels: list[int], *, batch_norm: bool, transposed: bool = False
) -> nn.Sequential:  # 3x3, stride 1, padding 1
    layers: list[nn.Module] = []
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    for in_channels, out_channels in zip(channels[:-1], channels[1:], strict=True):
        layers.append(conv(in_channels, out_channels, 3, 1, 1))
        layers.append(nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity())
        layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


class Paraphraser(nn.Module):
    """The teacher-side auto-encoder (the code's ``Paraphraser(t_shape, k=0.5, use_bn=False)``)."""

    def __init__(self, channels: int, rate: float = 0.5):
        super().__init__()
        factor_channels = int(channels * rate)
        self.encoder = _conv_block([channels, channels, factor_channels, factor_channels], batch_norm=False)
        self.decoder = _conv_block(
            [factor_channels, factor_channels, channels, channels], batch_norm=False, transposed=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def translator(student_channels: int, teacher_channels: int, rate: float = 0.5) -> nn.Sequential:
    """The student-side encoder (the code's ``Translator(s_shape, t_shape, k=0.5, use_bn=True)``)."""
    factor_channels = int(teacher_channels * rate)
    return _conv_block([student_channels, student_channels, factor_channels, factor_channels], batch_norm=True)


def factor(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.pow(2).mean(1).flatten(1))


@full_precision
def factor_loss(student_factor: torch.Tensor, teacher_factor: torch.Tensor) -> torch.Tensor:
    student_factor, teacher_factor = match_spatial(student_factor, teacher_factor)
    return (factor(student_factor) - factor(teacher_factor)).abs().mean()


@full_precision
def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(reconstruction, target)


@METHODS.register("ft", aliases=("FT", "factor"))
class FT(DistillLoss):
    """Factor transfer through a paraphraser pre-trained on the teacher (see the module docstring)."""

    needs_feature_maps = True  # reads stage outputs as C x H x W maps

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        *,
        weight: float = 200.0,
        init_epochs: int = 30,
        init_weight: float = 1.0,
        init_lr: float | None = None,
    ):
        super().__init__(teacher, student, weight=weight)
        problems = self.parameter_problems({"init_epochs": init_epochs, "init_lr": init_lr})
        if problems:
            raise ValueError("; ".join(problems))
        self.init_epoch_count = init_epochs
        self.init_weight = init_weight
        if init_lr is None and isinstance(student, (CifarResNet, WideResNet)):
            init_lr = RESNET_INIT_LR
        self.init_lr = init_lr
        teacher_channels = self.teacher.stage_info[-1].channels
        self.paraphraser = Paraphraser(teacher_channels)
        self.translator = translator(student.stage_info[-1].channels, teacher_channels)

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        problems = []
        if isinstance(params.get("init_epochs"), int) and params["init_epochs"] < 0:
            problems.append(f"ft.init_epochs: {params['init_epochs']} is negative (0 = no paraphraser training)")
        init_lr = params.get("init_lr")
        if init_lr is not None and (isinstance(init_lr, bool) or not isinstance(init_lr, (int, float)) or init_lr <= 0):
            problems.append(f"ft.init_lr: {init_lr!r} is not a positive number (or null: the CRD code's rule)")
        return problems

    def forward(self, student: Features, teacher: Features, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():  # the paraphraser is frozen after its init stage
            teacher_factor = self.paraphraser.encoder(teacher.stages[-1])
        student_factor = self.translator(student.stages[-1])
        return {"ft": self.weight * factor_loss(student_factor, teacher_factor)}

    def init_epochs(self) -> int:
        return self.init_epoch_count

    def init_loss(self, student: Features, teacher: Features) -> dict[str, torch.Tensor]:
        target = teacher.stages[-1]
        reconstruction = self.paraphraser(target)
        return {"ft_init": self.init_weight * reconstruction_loss(reconstruction, target)}

    def init_modules(self, student: StagedModel) -> list[nn.Module]:
        """The init stage trains the paraphraser only (the code's ``init_trainable_list``)."""
        return [self.paraphraser]

    def init_learning_rate(self, lr: float) -> float:
        return lr if self.init_lr is None else self.init_lr
