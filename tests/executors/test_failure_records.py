"""failed.json has one shape whichever path wrote it: train_run itself, the local executor, a SLURM job."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import kdbench.train
from kdbench.executors.local import run_local
from kdbench.executors.slurm import TrainJob
from kdbench.executors.training import train_under_lock
from kdbench.lifecycle import RunStatus
from kdbench.results.store import ResultStore, failure_stage, write_failure
from kdbench.suite import load_suite, plan
from kdbench.train import NonFiniteLoss, RunFailed, train_run
from tests.conftest import tiny_suite

EXPECTED_KEYS = {"reason", "type", "stage", "time"}


def assert_shape(record: dict, *, unexpected: bool) -> None:
    """The one shape: reason, type, stage, UTC time to the second; a traceback for unexpected errors only."""
    assert set(record) == EXPECTED_KEYS | ({"traceback"} if unexpected else set())
    assert isinstance(record["reason"], str) and record["reason"]
    moment = datetime.fromisoformat(record["time"])
    assert moment.utcoffset() == timedelta(0) and moment.microsecond == 0


@pytest.fixture
def tiny(write_suite, tmp_path: Path):
    """A written tiny suite (teacher, Vanilla, KD), nothing trained: store and runs."""
    store = ResultStore(tmp_path / "results")
    runs = plan(load_suite(write_suite(tiny_suite())))
    for spec in runs:
        store.write_spec(spec)
    return store, runs


def test_train_run_records_a_non_finite_loss_with_its_epoch(write_suite, tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")
    runs = plan(load_suite(write_suite(tiny_suite(schedule={"epochs": 2, "lr": 1.0e30, "milestones": [1]}))))
    teacher = store.write_spec(runs[0])
    with pytest.raises(NonFiniteLoss):
        train_run(teacher)
    record = store.failure(runs[0].run_id)
    assert_shape(record, unexpected=False)
    epoch = re.match(r"non-finite loss at epoch (\d+),", record["reason"]).group(1)
    assert record["type"] == "NonFiniteLoss" and record["stage"] == f"epoch {epoch}"
    assert len(store.run_dir(runs[0].run_id).joinpath("metrics.jsonl").read_text().splitlines()) == int(epoch) - 1


def test_train_run_records_a_missing_teacher_at_the_teacher_stage(tiny) -> None:
    store, runs = tiny
    kd = next(spec for spec in runs if spec.method == "KD")
    with pytest.raises(RunFailed):
        train_run(store.run_dir(kd.run_id))
    record = store.failure(kd.run_id)
    assert_shape(record, unexpected=False)
    assert (record["type"], record["stage"]) == ("RunFailed", "teacher") and "has not finished" in record["reason"]


def test_the_local_executor_records_an_unexpected_error_in_an_epoch_with_its_traceback(tiny, monkeypatch) -> None:
    store, runs = tiny

    def broken_evaluation(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(kdbench.train, "evaluate", broken_evaluation)  # called after each epoch's steps
    summary = run_local(runs[:1], store, progress=False, log=lambda line: None)
    assert summary.failed == [runs[0].run_id]
    record = store.failure(runs[0].run_id)
    assert_shape(record, unexpected=True)
    assert (record["reason"], record["type"], record["stage"]) == ("OSError: disk full", "OSError", "epoch 1")
    assert "broken_evaluation" in record["traceback"] and record["traceback"].rstrip().endswith("OSError: disk full")


def test_a_slurm_job_records_failures_in_the_same_shape_and_still_fails(tiny, monkeypatch) -> None:
    store, runs = tiny
    kd = next(spec for spec in runs if spec.method == "KD")
    with pytest.raises(RunFailed, match="has not finished"):  # its teacher was never trained
        TrainJob(str(store.run_dir(kd.run_id)))()
    assert_shape(store.failure(kd.run_id), unexpected=False)

    def broken(run_dir, **kwargs):
        raise MemoryError("no room")

    monkeypatch.setattr(kdbench.train, "train_run", broken)
    teacher = runs[0]
    with pytest.raises(MemoryError):  # the job fails, so students held afterok never start
        TrainJob(str(store.run_dir(teacher.run_id)))()
    record = store.failure(teacher.run_id)
    assert_shape(record, unexpected=True)
    assert (record["reason"], record["stage"]) == ("MemoryError: no room", "setup")


def test_train_under_lock_returns_each_outcome_in_run_statuses(tiny) -> None:
    store, runs = tiny
    teacher, kd = runs[0], next(spec for spec in runs if spec.method == "KD")
    failed = train_under_lock(store.root, kd.run_id)  # its teacher is not trained yet
    assert failed.status == RunStatus.FAILED and "has not finished" in failed.reason
    with store.lock(teacher.run_id):
        busy = train_under_lock(store.root, teacher.run_id)
    assert (busy.status, busy.reason) == (RunStatus.RUNNING, "another process is training it")
    assert train_under_lock(store.root, teacher.run_id, stop_after_epochs=1).status == RunStatus.INTERRUPTED
    done = train_under_lock(store.root, teacher.run_id)
    assert done.status == RunStatus.DONE and done.result == store.result(teacher.run_id)


def test_a_stage_an_error_declares_wins_and_one_outside_training_is_setup(tmp_path: Path) -> None:
    class Declared(Exception):
        stage = "data"

    for error, stage in ((Declared("x"), "data"), (ValueError("y"), "setup")):
        try:
            raise error
        except Exception as caught:
            assert failure_stage(caught) == stage
            assert write_failure(tmp_path, caught, expected=True)["stage"] == stage
