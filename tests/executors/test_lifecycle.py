"""One status vocabulary: the store, both executors, ``kdbench status`` and the reports say the same word."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from kdbench.cli import main
from kdbench.executors import get_executor, run_states
from kdbench.executors.slurm import JobInfo, state_from_job
from kdbench.lifecycle import RunState, RunStatus, count_statuses, with_blocked_students
from kdbench.results.store import ResultStore, atomic_write_json, results_frame, write_failure
from kdbench.suite import load_suite, plan
from kdbench.train import RunFailed
from tests.conftest import fabricated_result, tiny_suite


def test_a_status_is_its_word() -> None:
    assert RunStatus.BLOCKED == "blocked" and f"{RunStatus.BLOCKED:<9}|" == "blocked  |"
    assert str(RunStatus.NOT_APPLICABLE) == "na" and RunStatus("requeued") is RunStatus.REQUEUED
    assert {"done": 1}[RunStatus.DONE] == 1  # hashes as its word: usable as a key, in pandas' isin
    words = [status.value for status in RunStatus]
    assert len(set(words)) == len(words)


def test_counts_follow_the_declared_order() -> None:
    statuses = [RunStatus.FAILED, RunStatus.DONE, RunStatus.BLOCKED, RunStatus.DONE, "pending"]
    assert count_statuses(statuses) == "2 done, 1 pending, 1 blocked, 1 failed"


def _run(run_id: str, teacher_run: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(run_id=run_id, teacher_run=teacher_run, not_applicable=None)


def test_students_of_a_failed_teacher_are_blocked_down_a_chain() -> None:
    runs = [_run("t"), _run("s", "t"), _run("g", "s"), _run("done", "t"), _run("busy", "t")]
    states = {
        "t": RunState(RunStatus.FAILED, detail="non-finite loss"),
        "s": RunState(RunStatus.PENDING, job_id="12_0", job_active=True),
        "g": RunState(RunStatus.INTERRUPTED),
        "done": RunState(RunStatus.DONE),
        "busy": RunState(RunStatus.RUNNING),
    }
    marked = with_blocked_students(runs, states)
    assert marked["s"] == RunState(RunStatus.BLOCKED, "12_0", "teacher run t failed: non-finite loss")
    assert marked["g"].status == RunStatus.BLOCKED and marked["g"].detail.startswith("teacher run s blocked")
    assert marked["done"] == states["done"] and marked["busy"] == states["busy"]  # their own state stands
    assert states["s"].status == RunStatus.PENDING  # the input is left as it was


@pytest.fixture
def failed_teacher(write_suite, tmp_path: Path):
    """A tiny suite whose teacher run failed (failed.json, nothing trained): its store and runs."""
    suite_path = write_suite(tiny_suite())
    store = ResultStore(tmp_path / "results")
    runs = plan(load_suite(suite_path))
    for spec in runs:
        store.write_spec(spec)
    teacher = next(spec for spec in runs if spec.kind == "teacher")
    try:
        raise RunFailed("non-finite loss at epoch 1, step 1: ce=nan")
    except RunFailed as error:
        write_failure(store.run_dir(teacher.run_id), error, expected=True)
    return suite_path, store, runs


def test_every_view_calls_students_of_a_failed_teacher_blocked(failed_teacher, capsys) -> None:
    suite_path, store, runs = failed_teacher
    word = {"teacher": "failed", "Vanilla": "pending", "KD": "blocked"}
    expected = {spec.run_id: word["teacher" if spec.kind == "teacher" else spec.method] for spec in runs}

    assert {run_id: state.status for run_id, state in store.states(runs).items()} == expected
    assert {run_id: state.status for run_id, state in get_executor("local").states(store, runs).items()} == expected
    assert {run_id: state.status for run_id, state in run_states(store, runs).items()} == expected
    frame = results_frame(runs, store)
    assert dict(zip(frame["run_id"], frame["status"], strict=True)) == expected
    assert all(type(value) is str for value in frame["status"])  # plain words in runs.csv

    assert main(["status", str(suite_path), "--results-dir", str(store.root)]) == 1  # runs failed or blocked
    out = capsys.readouterr().out
    assert "1 pending, 1 blocked, 1 failed" in out
    kd = next(spec for spec in runs if spec.method == "KD")
    teacher = next(spec for spec in runs if spec.kind == "teacher")
    assert f"blocked  {kd.run_id}" in out and f"teacher run {teacher.run_id} failed: non-finite loss" in out


def test_every_executor_answers_in_run_statuses(failed_teacher) -> None:
    _, store, runs = failed_teacher
    for name in ("local", "slurm"):
        assert all(isinstance(state.status, RunStatus) for state in get_executor(name).states(store, runs).values())
    spec = runs[1]
    record = {"job_id": "7", "stderr": str(store.root / "none.err")}
    for job in (JobInfo("7", "PENDING", "Priority"), JobInfo("7", "CANCELLED", in_queue=False), None):
        assert isinstance(state_from_job(store, spec, record, job).status, RunStatus)
    assert isinstance(store.status(spec.run_id), RunStatus)


def test_a_run_trained_elsewhere_is_running_with_its_holder_and_an_interrupted_one_says_its_epochs(
    failed_teacher,
) -> None:
    _, store, runs = failed_teacher
    vanilla = next(spec for spec in runs if spec.method == "Vanilla")
    with store.lock(vanilla.run_id):
        state = store.states(runs)[vanilla.run_id]
        assert state.status == RunStatus.RUNNING and f"pid {os.getpid()} on {os.uname().nodename}" in state.detail
    (store.run_dir(vanilla.run_id) / "checkpoint.pt").write_bytes(b"")
    (store.run_dir(vanilla.run_id) / "metrics.jsonl").write_text("{}\n{}\n")
    assert store.states(runs)[vanilla.run_id] == RunState(RunStatus.INTERRUPTED, detail="2 epoch(s) done")
    atomic_write_json(store.run_dir(vanilla.run_id) / "result.json", fabricated_result(vanilla))
    assert store.states(runs)[vanilla.run_id] == RunState(RunStatus.DONE)
