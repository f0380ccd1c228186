"""KD's ``reduction: mean`` (the TAKD code's nn.KLDivLoss() default) against a float64 computation."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench.methods.kd import KD, kd_loss


def direct_kl(student: list[list[float]], teacher: list[list[float]], temperature: float) -> float:
    """Sum over classes and examples of p_T (log p_T - log p_S) at temperature T (no reduction)."""
    total = []
    for s_row, t_row in zip(student, teacher, strict=True):
        s_lse = math.log(math.fsum(math.exp(x / temperature) for x in s_row))
        t_lse = math.log(math.fsum(math.exp(x / temperature) for x in t_row))
        for s, t in zip(s_row, t_row, strict=True):
            log_p, log_q = t / temperature - t_lse, s / temperature - s_lse
            total.append(math.exp(log_p) * (log_p - log_q))
    return math.fsum(total)


def test_mean_reduction_divides_by_batch_and_classes_and_batchmean_by_batch() -> None:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(6, 7, generator=generator, dtype=torch.float64) * 2
    teacher = torch.randn(6, 7, generator=generator, dtype=torch.float64) * 2
    summed = direct_kl(student.tolist(), teacher.tolist(), 4.0) * 16
    assert kd_loss(student, teacher, 4.0).item() == pytest.approx(summed / 6, abs=1e-12)
    assert kd_loss(student, teacher, 4.0, "mean").item() == pytest.approx(summed / 42, abs=1e-12)


def test_an_unknown_reduction_is_named() -> None:
    assert KD.parameter_problems({"reduction": "sum"}) == ["kd.reduction: 'sum' is not one of batchmean, mean"]
    assert KD.parameter_problems({"reduction": "mean"}) == []
