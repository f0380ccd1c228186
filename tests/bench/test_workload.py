"""The random models and data shapes a benchmark times."""

from __future__ import annotations

import torch

from kdbench.bench.workload import calibrate_batchnorm, crop_padding
from kdbench.models import create_model


def test_a_random_deep_teacher_is_calibrated_to_finite_moderate_outputs() -> None:
    """Untrained BN statistics in eval mode let a ResNet110's activations grow with depth; calibrated, they do not."""
    torch.manual_seed(0)
    teacher = create_model("resnet110", 10).eval()
    images = torch.randn(8, 3, 8, 8)
    with torch.no_grad():
        assert teacher(images).abs().max() > 1e3  # the premise: raw init statistics do not normalise
    calibrate_batchnorm(teacher, (3, 8, 8), torch.device("cpu"), seed=0)
    assert not teacher.training
    assert all(m.momentum == 0.1 for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        assert teacher(images).abs().max() < 100


def test_crop_padding_follows_the_data_set() -> None:
    assert crop_padding("cifar100", 32) == 4
    assert crop_padding("tinyimagenet", 64) == 8
    assert crop_padding("digits", 8) == 1
