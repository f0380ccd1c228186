"""Logit standardisation: Sun et al., "Logit Standardization in Knowledge Distillation" (CVPR 2024).

Reference code: sunshangquan/logit-standardization-KD (``mdistiller/distillers/KD.py`` and ``DKD.py``,
``normalize``; ``CTKD/distiller_zoo/KD.py``, ``DistillKL_logit_stand``; ``tools/train.py`` for the
published settings). Each example's logits are z-scored over the classes, (z - mean) / (1e-7 + std),
with the unbiased standard deviation (``Tensor.std``'s default) and the 1e-7 added to the deviation,
before the temperature divides them. The temperature is then the paper's *base* temperature.

The published settings (``--logit-stand --base-temp 2 --kd-weight 9``): KD with base temperature 2
and KD weight 9 against CE 0.1 (plain KD in the CRD recipe: temperature 4, KD weight 0.9, CE 0.1; so
the LS row is ``kd: {logit_standardize: true, temperature: 2, weight: 9}``); DKD with base temperature
2 and alpha and beta both multiplied by 9 (``dkd: {logit_standardize: true, temperature: 2, weight: 9}``:
``weight`` multiplies alpha * TCKD + beta * NCKD). The README's log names give other base temperatures
and weights for some pairs (e.g. 3 and 18 for DKD ResNet56 -> ResNet20).

Not a method of its own: the ``logit_standardize`` option of ``kd``, ``dkd`` and ``ctkd`` (the methods
the reference applies it to).
"""

from __future__ import annotations

import torch

#: added to the standard deviation, as the reference does
EPSILON = 1e-7


def standardize(logits: torch.Tensor) -> torch.Tensor:
    """Z-score each row over the classes: (z - mean) / (1e-7 + unbiased std)."""
    mean = logits.mean(dim=-1, keepdim=True)
    deviation = logits.std(dim=-1, keepdim=True)
    return (logits - mean) / (EPSILON + deviation)


def maybe_standardize(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, enabled: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides standardised when ``enabled``, else unchanged."""
    if not enabled:
        return student_logits, teacher_logits
    return standardize(student_logits), standardize(teacher_logits)
