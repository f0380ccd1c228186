"""The shared training step: batches as tuples or mappings, the per-epoch hook, the device-side meter."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from torch import nn

from kdbench.models import create_model
from kdbench.step import EpochMeter, TrainingStep, batch_fields, build_training_step
from kdbench.suite import SCHEDULE_PRESETS


class RecordingDistiller(nn.Module):
    """Stands in for a distiller: a linear student that records what each call received."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.calls: list[dict] = []
        self.epochs: list[int] = []

    def forward(self, images: torch.Tensor, labels: torch.Tensor, **extra: torch.Tensor) -> tuple:
        self.calls.append(extra)
        logits = self.linear(images)
        return logits, {"ce": nn.functional.cross_entropy(logits, labels)}

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def init_epochs(self) -> int:
        return 0


def recording_step() -> TrainingStep:
    distiller = RecordingDistiller()
    optimizer = torch.optim.SGD(distiller.parameters(), lr=0.1)
    return TrainingStep(distiller, optimizer, None, contextlib.nullcontext, torch.device("cpu"))  # type: ignore[arg-type]


def test_a_tuple_batch_names_its_parts_and_a_mapping_passes_through() -> None:
    images, labels, indices = torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([5, 7])
    assert list(batch_fields((images, labels))) == ["images", "labels"]
    assert batch_fields((images, labels, indices))["indices"] is indices
    assert batch_fields({"images": images, "labels": labels, "weights": indices})["weights"] is indices
    with pytest.raises(ValueError, match="at most 3 parts"):
        batch_fields((images, labels, indices, indices))


def test_extra_per_sample_tensors_reach_the_distiller_and_the_epoch_hook_is_called() -> None:
    step = recording_step()
    meter = step.begin_epoch(4)
    images, labels, indices = torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([5, 7])
    step((images, labels), meter)
    step((images, labels, indices), meter)
    step({"images": images, "labels": labels, "indices": indices}, meter)
    distiller = step.distiller
    assert distiller.epochs == [4] and distiller.training
    assert distiller.calls[0] == {}
    assert all(torch.equal(call["indices"], indices) for call in distiller.calls[1:])
    assert meter.steps == 3 and meter.seen == 6


def test_the_meter_sums_losses_in_float64_and_names_the_first_non_finite_step() -> None:
    meter = EpochMeter(torch.device("cpu"))
    values = [(0.5, 2), (0.25, 2), (float("nan"), 1), (float("inf"), 2)]
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    for value, count in values[:2]:
        meter.add(
            {"ce": torch.tensor(value, dtype=torch.float32)}, logits[:count], torch.zeros(count, dtype=torch.long)
        )
    totals = meter.finish(0)
    assert totals.nonfinite is None and totals.seen == 4
    assert totals.loss_sums["ce"] == pytest.approx(math.fsum(v * c for v, c in values[:2]), rel=0, abs=1e-15)
    assert totals.correct == 1 + 1  # the first logits row predicts class 0 in both calls (labels are all 0)
    for value, count in values[2:]:
        meter.add({"ce": torch.tensor(value)}, None, torch.zeros(count, dtype=torch.long))
    assert meter.finish(1).nonfinite == "non-finite loss at epoch 2, step 3: ce=nan"
    assert int(meter.nonfinite_steps) == 2


def test_the_built_step_follows_the_training_settings() -> None:
    torch.manual_seed(0)
    student = create_model("resnet8", 4)
    schedule = SCHEDULE_PRESETS["crd"]
    step = build_training_step(
        student,
        None,
        terms=(("vanilla", {}),),
        ce_weight=1.0,
        schedule=schedule,
        training={"channels_last": True, "compile": "off", "precision": "fp32"},
        seed=0,
        device=torch.device("cpu"),
    )
    conv = next(m for m in step.distiller.student.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    group = step.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (
        schedule["lr"],
        schedule["momentum"],
        schedule["weight_decay"],
    )
    assert step.init_optimizer is None and step.init_epochs == 0
    with step.autocast():
        assert not torch.is_autocast_enabled()  # bf16 is for CUDA only; a CPU step runs in fp32
