"""Failures on the real test cluster: a failed teacher blocks its students; a cancelled run shows as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdbench.cli import main
from kdbench.executors.slurm import read_record, submit_suite
from kdbench.results.store import ResultStore

pytestmark = pytest.mark.slurm


def test_failed_teacher_blocks_its_students(cluster, tmp_path: Path) -> None:
    # A learning rate of 1e30 makes the teacher's loss non-finite at once: the run fails on its own.
    _, runs = cluster.suite(tmp_path, teachers={"resnet8": {"schedule": {"lr": 1.0e30}}}, methods={"KD": {"use": "kd"}})
    teacher = next(spec for spec in runs if spec.kind == "teacher")
    student = next(spec for spec in runs if spec.kind == "student")
    store = ResultStore(tmp_path / "results")
    profile = cluster.profile()
    first = submit_suite(runs, store, profile)
    assert set(first.submitted) == {teacher.run_id, student.run_id}

    states = cluster.wait_final(store, runs, timeout_s=120)
    failed, blocked = states[teacher.run_id], states[student.run_id]
    assert failed.status == "failed" and "non-finite" in failed.detail
    assert failed.log_path and Path(failed.log_path).is_file()
    assert failed.log_tail and "non-finite" in failed.log_tail
    assert blocked.status == "blocked" and teacher.run_id in blocked.detail

    again = submit_suite(runs, store, profile)
    assert again.submitted == {}
    assert set(again.failed) == {teacher.run_id} and set(again.blocked) == {student.run_id}

    retried = submit_suite(runs, store, profile, retry_failed=True)
    assert set(retried.submitted) == {teacher.run_id, student.run_id}
    assert read_record(store, student.run_id)["dependency"] == f"afterok:{retried.submitted[teacher.run_id]}"
    assert (store.run_dir(teacher.run_id) / "failed.1.json").exists()  # the old failure is kept aside
    assert len(read_record(store, teacher.run_id)["previous"]) == 1
    cluster.wait_final(store, runs, timeout_s=120)


def test_cancelled_run_shows_cancelled(cluster, tmp_path: Path, capsys) -> None:
    long_schedule = {"epochs": 500, "batch_size": 64, "lr": 0.05, "milestones": [1]}
    suite_path, runs = cluster.suite(tmp_path, schedule=long_schedule, methods={"KD": {"use": "kd"}})
    teacher = next(spec for spec in runs if spec.kind == "teacher")
    student = next(spec for spec in runs if spec.kind == "student")
    store = ResultStore(tmp_path / "results")
    submit_suite(runs, store, cluster.profile())
    job_id = read_record(store, teacher.run_id)["job_id"]
    cluster.wait_for("the teacher's job to run", lambda: (cluster.squeue(job_id) or ("",))[0] == "RUNNING", 60)

    code = main(["cancel", str(suite_path), "--results-dir", str(store.root), "--method", "teacher"])
    printed = capsys.readouterr().out
    assert code == 0 and f"job {job_id}" in printed and teacher.run_id in printed and student.run_id not in printed
    states = cluster.wait_final(store, runs, timeout_s=90)
    assert states[teacher.run_id].status == "cancelled"
    # Its student was waiting on it (afterok): SLURM cancels it too, rather than leaving it pending forever.
    assert states[student.run_id].status == "cancelled"
    assert main(["cancel", str(suite_path), "--results-dir", str(store.root)]) == 0
    assert "nothing to cancel" in capsys.readouterr().out
