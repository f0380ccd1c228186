"""The training loop: exact resume after an interruption, NaN handling, the per-run lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kdbench.executors.local import run_local
from kdbench.results.store import ResultStore, RunLocked
from kdbench.suite import load_suite, plan
from kdbench.train import train_run
from tests.conftest import tiny_suite


def comparable(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock seconds."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=False)["model"]


def prepare(write_suite, root: Path, **changes) -> tuple[ResultStore, list]:
    store = ResultStore(root)
    runs = plan(load_suite(write_suite(tiny_suite(**changes))))
    for spec in runs:
        store.write_spec(spec)
    return store, runs


def train_teacher_and_kd(store: ResultStore, runs: list, **kwargs) -> Path:
    teacher, kd = runs[0], next(r for r in runs if r.method == "KD")
    train_run(store.run_dir(teacher.run_id))
    return store.run_dir(kd.run_id)


@pytest.mark.parametrize("stop_after", [1, 2, 3])
def test_resume_at_any_epoch_gives_bit_identical_metrics_and_weights(write_suite, tmp_path, stop_after) -> None:
    schedule = {"epochs": 4, "batch_size": 16, "lr": 0.05, "milestones": [2, 3], "lr_decay": 0.1}
    store, runs = prepare(write_suite, tmp_path / "results", schedule=schedule)
    kd_dir = train_teacher_and_kd(store, runs)
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "spec.yaml").write_text((kd_dir / "spec.yaml").read_text())
    (tmp_path / "results" / "runs" / "reference").symlink_to(reference)  # teacher lookup is by sibling dir

    first = train_run(kd_dir, stop_after_epochs=stop_after)
    assert first["status"] == "interrupted" and len(comparable(kd_dir)) == stop_after
    resumed = train_run(kd_dir)
    uninterrupted = train_run(tmp_path / "results" / "runs" / "reference")

    assert comparable(kd_dir) == comparable(reference)
    assert resumed["top1_last"] == uninterrupted["top1_last"]
    for key, tensor in weights(reference).items():
        assert torch.equal(weights(kd_dir)[key], tensor), key


def test_kill_9_mid_epoch_resumes_to_the_same_result(write_suite, tmp_path) -> None:
    data = {"name": "synthetic", "num_classes": 4, "image_size": 16, "train_size": 384, "test_size": 64}
    schedule = {"epochs": 5, "batch_size": 16, "lr": 0.05, "milestones": [3], "lr_decay": 0.1}
    store, runs = prepare(write_suite, tmp_path / "a", dataset=data, schedule=schedule)
    kd_dir = train_teacher_and_kd(store, runs)
    other, _ = prepare(write_suite, tmp_path / "b", dataset=data, schedule=schedule)
    train_teacher_and_kd(other, runs)
    reference = train_run(other.run_dir(runs[-1].run_id if runs[-1].method == "KD" else runs[2].run_id))

    code = f"from kdbench.train import train_run; train_run({str(kd_dir)!r})"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parent.parent)
    deadline = time.monotonic() + 120
    metrics = kd_dir / "metrics.jsonl"
    while time.monotonic() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.01)
    time.sleep(0.05)  # land inside the third epoch, between checkpoints
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (kd_dir / "result.json").exists(), "the run finished before it could be killed"
    resumed = train_run(kd_dir)
    assert resumed["top1_last"] == reference["top1_last"]
    assert comparable(kd_dir) == comparable(other.run_dir(resumed["run_id"]))


def test_a_nan_loss_fails_that_run_and_the_suite_goes_on(write_suite, tmp_path) -> None:
    teachers = {"resnet8": {"schedule": {"lr": 1.0e30}}}  # the teacher diverges at once
    store, runs = prepare(write_suite, tmp_path, teachers=teachers)
    lines: list[str] = []
    summary = run_local(runs, store, progress=False, log=lines.append)
    teacher, vanilla, kd = runs
    assert summary.failed == [teacher.run_id]
    assert summary.trained == [vanilla.run_id]
    assert summary.blocked == [kd.run_id]
    failure = store.failure(teacher.run_id)
    assert "non-finite loss at epoch 1" in failure["reason"]
    assert store.status(teacher.run_id) == "failed"
    assert any("blocked" in line and "failed" in line for line in lines)


def test_a_checkpoint_of_an_older_version_is_kept_aside_and_the_run_trains_afresh(
    write_suite, tmp_path, capsys
) -> None:
    store, runs = prepare(write_suite, tmp_path / "results")
    teacher = store.run_dir(runs[0].run_id)
    train_run(teacher, stop_after_epochs=1)
    state = torch.load(teacher / "checkpoint.pt", weights_only=False)
    state["version"] = 1
    torch.save(state, teacher / "checkpoint.pt")
    other, _ = prepare(write_suite, tmp_path / "other")
    result = train_run(teacher)
    assert "checkpoint.pt was written by another kdbench version; training afresh" in capsys.readouterr().err
    assert result["status"] == "done" and (teacher / "checkpoint.v1.pt").exists()
    fresh = other.run_dir(runs[0].run_id)
    train_run(fresh)
    assert comparable(teacher) == comparable(fresh)  # every epoch trained by this version


def test_an_unexpected_error_is_recorded_with_its_traceback_and_time(write_suite, tmp_path, monkeypatch) -> None:
    import kdbench.train

    def broken(run_dir, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(kdbench.train, "train_run", broken)
    store, runs = prepare(write_suite, tmp_path)
    summary = run_local(runs, store, progress=False, log=lambda line: None)
    teacher, vanilla, kd = runs
    assert summary.failed == [teacher.run_id, vanilla.run_id] and summary.blocked == [kd.run_id]
    failure = store.failure(teacher.run_id)
    assert failure["reason"] == "OSError: disk full" and failure["type"] == "OSError"
    assert "raise OSError" in failure["traceback"] and failure["time"].startswith("20")
    assert failure["stage"] == "setup"  # before any training function ran


def test_a_locked_run_is_left_to_the_process_that_holds_it(write_suite, tmp_path) -> None:
    store, runs = prepare(write_suite, tmp_path)
    teacher = runs[0]
    with store.lock(teacher.run_id):
        assert store.status(teacher.run_id) == "running"
        with pytest.raises(RunLocked):
            with store.lock(teacher.run_id):
                pass
        summary = run_local(runs[:1], store, progress=False, log=lambda line: None)
        assert summary.running_elsewhere == [teacher.run_id] and not summary.trained
    assert store.status(teacher.run_id) == "pending"


def test_a_lock_held_by_another_process_is_respected(write_suite, tmp_path) -> None:
    store, runs = prepare(write_suite, tmp_path)
    lock_file = store.run_dir(runs[0].run_id) / ".lock"
    code = (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(30)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock_file)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert store.status(runs[0].run_id) == "running"
        summary = run_local(runs[:1], store, progress=False, log=lambda line: None)
        assert summary.running_elsewhere == [runs[0].run_id]
    finally:
        holder.kill()
        holder.wait()


def test_same_suite_and_seed_give_the_same_numbers_twice(write_suite, tmp_path) -> None:
    store, runs = prepare(write_suite, tmp_path / "x")
    run_local(runs, store, progress=False, log=lambda line: None)
    again, _ = prepare(write_suite, tmp_path / "y")
    run_local(runs, again, progress=False, log=lambda line: None)
    for spec in runs:
        assert comparable(store.run_dir(spec.run_id)) == comparable(again.run_dir(spec.run_id))
    result = store.result(runs[1].run_id)
    for key in ("top1_last", "top5_last", "top1_best", "student_params", "student_flops", "torch_version"):
        assert key in result
    assert result["student_params"] > 0 and result["epochs"] == 2


def test_worker_processes_give_the_same_results_as_one_process(write_suite, tmp_path) -> None:
    store, runs = prepare(write_suite, tmp_path / "one", seeds=[0, 1])
    run_local(runs, store, progress=False, log=lambda line: None)
    parallel, _ = prepare(write_suite, tmp_path / "two", seeds=[0, 1])
    summary = run_local(runs, parallel, progress=False, workers=2, log=lambda line: None)
    assert sorted(summary.trained) == sorted(r.run_id for r in runs)
    for spec in runs:  # CPU runs use one thread wherever they run: bit-identical
        assert comparable(store.run_dir(spec.run_id)) == comparable(parallel.run_dir(spec.run_id))


WORKER_OF_A_KILLED_PARENT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from kdbench.executors.training import die_with_parent

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(1, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 600)
    time.sleep(600)
"""


def test_worker_processes_end_with_a_killed_parent(tmp_path) -> None:
    """kill -9 of `kdbench run --workers N` must not leave workers training on with the runs' locks."""
    script = tmp_path / "parent.py"
    script.write_text(WORKER_OF_A_KILLED_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if running(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its killed parent")


def running(pid: int) -> bool:
    """The process exists and has not ended (a zombie waiting for its reaper has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
