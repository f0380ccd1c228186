"""M-FitNet: multi-stage FitNet, the SRKD paper's Fig. 1c baseline (Chen & Sun 2024, Table 2, Table 4
row "Number = 0").

Reference: the paper only (no public code); FitNet's hint idea (Romero et al., ICLR 2015) applied
at every stage with the SRKD paper's adaptation layers, so that it is SRKD without stage reset.

Features: every selected stage output F_i^S of the student through a trainable 1x1 conv + BN
adapter A_i (``StageAdapter``), compared by MSE (mean over elements) with the teacher's own stage
output F_i^T computed from the image ("inputs from the image side"); the larger map average-pooled
to the smaller's size when they differ; summed over stages. It is ``srkd`` with
``reset_stages: 0``: same adapters, same reduction, so Table 4's row 0 is comparable to its rows
1-3 term for term.

Defaults: weight 0.1 (SRKD's lambda, which makes Table 4's row 0 comparable; the paper states no
M-FitNet weight), ``stages`` None = all (or ``"all"``, an int k = the last k stages, or a list of
1-based stage numbers), CE weight 1 alone; the paper's M-FitNet cells presumably sit beside KD, so a
suite may use ``[kd, mfitnet]`` as SRKD uses ``[kd, srkd]``.

Deliberate differences: FitNet's ConvReg (conv + BN + ReLU) is replaced by the SRKD paper's
1x1 conv + BN adapter, and the hint is taken at every stage rather than one.
"""

from __future__ import annotations

from kdbench.methods import METHODS
from kdbench.methods.srkd import StageHints, StageSelection
from kdbench.models.base import StagedModel


@METHODS.register("mfitnet", aliases=("M-FitNet", "multi_fitnet", "multi-stage-fitnet"))
class MFitNet(StageHints):
    """Hints at every stage output from the image side (see the module docstring)."""

    needs_feature_maps = True  # reads stage outputs as C x H x W maps

    loss_name = "mfitnet"

    def __init__(
        self, teacher: StagedModel, student: StagedModel, *, weight: float = 0.1, stages: StageSelection = None
    ):
        super().__init__(
            teacher, student, weight=weight, stages=stages, reset_stages="none", grad_through_teacher=False
        )
