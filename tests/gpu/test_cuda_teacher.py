"""The frozen teacher stays frozen on CUDA: its parameters and BN statistics after steps are those before."""

from __future__ import annotations

import pytest
import torch

from kdbench.bench.workload import calibrate_batchnorm, resolved_terms
from kdbench.models import create_model
from kdbench.step import build_training_step
from kdbench.suite import SCHEDULE_PRESETS
from tests.gpu.cuda_helpers import CUDA_ONLY

pytestmark = CUDA_ONLY


@pytest.mark.parametrize("method", ["kd", "at", "cc", "srkd"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_teacher_parameters_and_statistics_are_unchanged_by_training_steps(method: str, precision: str) -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    teacher = create_model("resnet14", 10).to(device)
    calibrate_batchnorm(teacher, (3, 16, 16), device, seed=0)  # non-trivial running statistics
    before = {name: value.clone() for name, value in teacher.state_dict().items()}
    terms = resolved_terms(["kd", "srkd"] if method == "srkd" else [method])  # SRKD as the paper: with KD
    step = build_training_step(
        create_model("resnet8", 10),
        teacher,
        terms=terms,
        ce_weight=1.0,
        schedule=SCHEDULE_PRESETS["crd"],
        training={"precision": precision, "channels_last": True, "compile": "off"},
        seed=0,
        device=device,
    )
    meter = step.begin_epoch(0)
    generator = torch.Generator(device=device).manual_seed(0)
    for _ in range(3):
        images = torch.randn(32, 3, 16, 16, device=device, generator=generator)
        step((images, torch.randint(0, 10, (32,), device=device, generator=generator)), meter)
    torch.cuda.synchronize()
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert meter.finish(0).seen == 96
