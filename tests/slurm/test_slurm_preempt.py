"""A run preempted mid-training (scontrol requeue) resumes from its checkpoint to the uninterrupted result."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kdbench.executors.slurm import read_record, slurm_states, submit_suite
from kdbench.results.store import ResultStore

pytestmark = pytest.mark.slurm

EPOCHS = 80  # about 10 s of training: time to requeue it mid-run (CPU runs use one fast thread)


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_requeued_run_resumes_to_the_same_result(cluster, tmp_path: Path) -> None:
    _, runs = cluster.suite(tmp_path, schedule={"epochs": EPOCHS, "batch_size": 64, "lr": 0.05, "milestones": [6]})
    teacher = [spec for spec in runs if spec.kind == "teacher"]
    profile = cluster.profile()
    reference, preempted = ResultStore(tmp_path / "reference"), ResultStore(tmp_path / "preempted")
    submit_suite(teacher, reference, profile)
    submit_suite(teacher, preempted, profile)
    run_id = teacher[0].run_id
    run_dir = preempted.run_dir(run_id)
    job_id = read_record(preempted, run_id)["job_id"]

    # Preempt it once two epochs are checkpointed (many are left, so it cannot finish before it is killed).
    cluster.wait_for("two finished epochs", lambda: len(_metrics(run_dir)) >= 2, timeout_s=120, every_s=0.2)
    assert preempted.result(run_id) is None
    cluster.command("scontrol", "requeue", job_id)
    # A requeued job waits 120 s (reason BeginTime) before it may start again; the test skips the wait.
    cluster.wait_for("the requeued job to pend", lambda: cluster.squeue(job_id) == ("PENDING", "BeginTime"), 60)
    assert slurm_states(preempted, teacher)[run_id].status == "requeued"
    before = _metrics(run_dir)
    assert 2 <= len(before) < EPOCHS and preempted.result(run_id) is None
    # not within the second of the requeue: slurmd may refuse that launch ("Job credential revoked")
    time.sleep(2)
    cluster.command("scontrol", "update", f"jobid={job_id}", "StartTime=now")

    states = cluster.wait_final(preempted, teacher, timeout_s=180)
    cluster.wait_final(reference, teacher, timeout_s=60)
    assert states[run_id].status == "done"
    after = _metrics(run_dir)
    # Resumed, not restarted: the epochs trained before the preemption are kept as they were (timings too).
    assert after[: len(before)] == before
    assert len(after) == EPOCHS

    def outcome(store: ResultStore) -> tuple:
        result = store.result(run_id)
        losses = [{k: v for k, v in m.items() if k != "seconds"} for m in _metrics(store.run_dir(run_id))]
        return result["top1_last"], result["top1_best"], result["test_loss_last"], losses

    assert outcome(preempted) == outcome(reference)
