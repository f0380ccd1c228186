"""VID against an independent float64 computation of the Gaussian negative log-likelihood."""

from __future__ import annotations

import math

import torch
from method_helpers import batch, block_mean_pool, build_pair, conv1x1

from kdbench.methods import METHODS, create_distiller


def vid_reference(stage: torch.nn.Module, student_map: torch.Tensor, teacher_map: torch.Tensor) -> float:
    size = min(student_map.shape[2], teacher_map.shape[2])
    student_map, teacher_map = block_mean_pool(student_map, size), block_mean_pool(teacher_map, size)
    first, _, second, _, third = stage.regressor
    mean = conv1x1(conv1x1(conv1x1(student_map, first).clamp(min=0), second).clamp(min=0), third)
    variances = [math.log(1 + math.exp(x)) + stage.eps for x in stage.log_scale.detach().tolist()]
    total, count = 0.0, 0
    for n in range(mean.shape[0]):
        for c in range(mean.shape[1]):
            for value, target in zip(mean[n, c].flatten().tolist(), teacher_map[n, c].flatten().tolist(), strict=True):
                total += 0.5 * ((value - target) ** 2 / variances[c] + math.log(variances[c]))
                count += 1
    return total / count


def test_vid_is_gaussian_nll_of_regressed_stage_outputs() -> None:
    teacher, student = build_pair("resnet8x4", "resnet8")
    teacher, student = teacher.double().eval(), student.double().train()
    images, labels = batch(dtype=torch.float64)
    with torch.no_grad():
        s, t = student.forward_features(images), teacher.forward_features(images)
    vid = METHODS.get("vid")(teacher, student).double()
    with torch.no_grad():  # move the variances off their common start so each channel's weighs differently
        for stage in vid.stages:
            stage.log_scale.add_(torch.linspace(-1, 1, len(stage.log_scale), dtype=torch.float64))
    expected = sum(vid_reference(stage, a, b) for stage, a, b in zip(vid.stages, s.stages, t.stages, strict=True))
    loss = vid(s, t, labels)["vid"]
    assert math.isclose(loss.item(), expected, rel_tol=1e-10)


def test_vid_starts_at_the_initial_variance_with_the_code_s_weights() -> None:
    teacher, student = build_pair("resnet8x4", "resnet8")
    vid = METHODS.get("vid")(teacher, student)
    assert len(vid.stages) == 3
    for stage, info in zip(vid.stages, teacher.stage_info, strict=True):
        variance = torch.nn.functional.softplus(stage.log_scale) + stage.eps
        assert torch.allclose(variance, torch.full((info.channels,), 5.0))
        assert [m.out_channels for m in stage.regressor if isinstance(m, torch.nn.Conv2d)] == [info.channels] * 3
        assert all(m.bias is None for m in stage.regressor if isinstance(m, torch.nn.Conv2d))
    assert vid.weight == 1.0 and create_distiller(student, teacher, [("vid", {})]).ce_weight == 1.0
    assert METHODS.get("vid").parameter_problems({"init_pred_var": 1e-6, "eps": 1e-5})
