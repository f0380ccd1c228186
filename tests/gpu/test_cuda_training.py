"""Training on CUDA: fp32, bf16 and compiled runs learn and resume from their checkpoint.

fp32 with ``training.deterministic: true`` resumes bit-identically; bf16 and compiled runs (cuDNN
autotuning, reordered arithmetic) within ``TOP1_TOLERANCE`` / ``LOSS_TOLERANCE`` of a run trained whole.
"""

from __future__ import annotations

import pytest
import torch

from kdbench.train import train_run
from tests.gpu.cuda_helpers import (
    CHANCE_TOP1,
    CUDA_ONLY,
    LOSS_TOLERANCE,
    TOP1_TOLERANCE,
    cuda_suite,
    metrics,
    train_interrupted_and_whole,
    weights,
    write_planned,
)

pytestmark = CUDA_ONLY

MODES = {
    "fp32-deterministic": {"precision": "fp32", "deterministic": True},
    "bf16": {"precision": "bf16"},
    "bf16-compiled": {"precision": "bf16", "compile": "reduce-overhead"},
}


@pytest.mark.parametrize("mode", list(MODES))
def test_a_two_epoch_run_learns_and_resumes(mode: str, tmp_path) -> None:
    # the compiled mode trains a Vanilla student only: every compile costs seconds, and KD is covered eagerly
    methods = {"Vanilla": {"use": "vanilla"}} if "compile" in MODES[mode] else {"KD": {"use": "kd"}}
    store, runs = write_planned(cuda_suite(MODES[mode], methods), tmp_path)
    teacher = next(spec for spec in runs if spec.kind == "teacher")
    student = next(spec for spec in runs if spec.kind != "teacher")
    if student.teacher_run is not None:
        train_run(store.run_dir(teacher.run_id), device="cuda")
    resumed, whole = train_interrupted_and_whole(store, student)
    resumed_metrics, whole_metrics = metrics(resumed), metrics(whole)
    assert len(resumed_metrics) == len(whole_metrics) == 2
    assert whole_metrics[-1]["test_top1"] > 2 * CHANCE_TOP1, whole_metrics  # learns: chance is 25%
    if MODES[mode].get("deterministic"):
        assert resumed_metrics == whole_metrics
        for name, tensor in weights(whole).items():
            assert torch.equal(weights(resumed)[name], tensor), name
    else:
        assert abs(resumed_metrics[-1]["test_top1"] - whole_metrics[-1]["test_top1"]) <= TOP1_TOLERANCE
        for after, before in zip(resumed_metrics, whole_metrics, strict=True):
            assert after["train_loss"] == pytest.approx(before["train_loss"], rel=LOSS_TOLERANCE)
