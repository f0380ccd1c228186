"""Issue 13 at the command line: damaged files are repaired (or retrained) and say so, a full disk stops the
suite with one message, two `kdbench run` of one suite share it, a failure whose cause is gone is retried
or named with --retry-failed, and status/report say things once and plainly. Each test: exit code and
message, no traceback, and the numbers compared against the run before the damage."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from kdbench.cli import main
from kdbench.lifecycle import RunStatus
from kdbench.results.store import ResultStore, write_failure
from kdbench.suite import load_suite, plan
from kdbench.train import NonFiniteLoss, RunFailed
from tests.conftest import tiny_suite

#: what a rebuilt or retrained result must repeat exactly (times and the finishing moment may differ)
NUMBERS = ("top1_last", "top5_last", "test_loss_last", "top1_best", "top5_best", "best_epoch", "epochs")


def run_cli(*arguments: str) -> int:
    return main(["run", *arguments, "--quiet", "--workers", "1", "--no-report"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny suite (teacher, Vanilla, KD; 2 epochs) trained once; tests copy it."""
    folder = tmp_path_factory.mktemp("trained")
    suite = folder / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite()))
    assert run_cli(str(suite), "--results-dir", str(folder / "results")) == 0
    return folder


@pytest.fixture
def copy(trained: Path, tmp_path: Path):
    """(suite path, store, runs by method) of a fresh copy of the trained suite."""
    shutil.copytree(trained, tmp_path / "copy")
    suite = tmp_path / "copy" / "suite.yaml"
    store = ResultStore(tmp_path / "copy" / "results")
    runs = {spec.method or "Teacher": spec for spec in plan(load_suite(suite)).runs}
    return suite, store, runs


def numbers(store: ResultStore, run_id: str) -> dict:
    result = json.loads((store.run_dir(run_id) / "result.json").read_text())
    return {key: result[key] for key in NUMBERS}


def no_traceback(captured: pytest.CaptureResult) -> str:
    text = captured.out + captured.err
    assert "Traceback" not in text, text
    return text


def test_a_truncated_result_is_not_done_and_is_rebuilt_from_the_checkpoint(copy, capsys) -> None:
    suite, store, runs = copy
    kd = runs["KD"].run_id
    before = numbers(store, kd)
    path = store.run_dir(kd) / "result.json"
    path.write_text(path.read_text()[:100])
    capsys.readouterr()
    # status and report read it as not done (no JSONDecodeError)
    assert main(["status", str(suite), "--results-dir", str(store.root)]) == 0
    status = no_traceback(capsys.readouterr())
    assert "1 interrupted" in status and "result.json is damaged (kdbench run rebuilds or retrains it)" in status
    assert main(["report", str(suite), "--results-dir", str(store.root), "--no-plots"]) == 0
    no_traceback(capsys.readouterr())

    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    out = no_traceback(capsys.readouterr())
    assert f"repaired {kd}" in out and "not a complete JSON record" in out
    assert "set aside as result.damaged.json and rebuilt from the checkpoint and metrics, which hold every epoch" in out
    assert numbers(store, kd) == before and (store.run_dir(kd) / "result.damaged.json").exists()


def test_a_result_that_parses_but_misses_its_fields_is_not_done_and_is_rebuilt(copy, capsys) -> None:
    """A whole JSON object is not enough (a bad copy, a tool that wrote ``{}``): the schema's fields make a result."""
    suite, store, runs = copy
    kd = runs["KD"].run_id
    before = numbers(store, kd)
    (store.run_dir(kd) / "result.json").write_text('{"status": "done"}\n')
    assert main(["status", str(suite), "--results-dir", str(store.root)]) == 0
    assert "result.json is damaged" in no_traceback(capsys.readouterr())
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    out = no_traceback(capsys.readouterr())
    assert f"repaired {kd}" in out and "missing 'top1_last'" in out
    assert numbers(store, kd) == before


def test_an_empty_result_without_a_checkpoint_is_retrained_to_the_same_numbers(copy, capsys) -> None:
    suite, store, runs = copy
    vanilla = runs["Vanilla"].run_id
    before = numbers(store, vanilla)
    (store.run_dir(vanilla) / "result.json").write_text("")
    for name in ("checkpoint.pt", "checkpoint.prev.pt", "metrics.jsonl"):
        (store.run_dir(vanilla) / name).unlink(missing_ok=True)
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    out = no_traceback(capsys.readouterr())
    assert "retrained (no checkpoint)" in out and "1 trained, 2 already done" in out
    assert numbers(store, vanilla) == before


def test_a_truncated_checkpoint_falls_back_to_the_one_before_and_resumes_bit_identically(
    write_suite, tmp_path: Path, capsys
) -> None:
    from kdbench.executors.training import train_under_lock

    schedule = {"epochs": 3, "batch_size": 16, "lr": 0.05, "milestones": [2], "lr_decay": 0.1}
    runs = plan(load_suite(write_suite(tiny_suite(schedule=schedule, methods={"Vanilla": {"use": "vanilla"}}))))
    student = next(spec for spec in runs.runs if spec.method == "Vanilla")
    stores = [ResultStore(tmp_path / name) for name in ("damaged", "reference")]
    for store in stores:
        store.write_spec(student)
    damaged, reference = stores
    assert train_under_lock(damaged.root, student.run_id, stop_after_epochs=2).status == RunStatus.INTERRUPTED
    checkpoint = damaged.run_dir(student.run_id) / "checkpoint.pt"
    assert (checkpoint.with_name("checkpoint.prev.pt")).exists()
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    resumed = train_under_lock(damaged.root, student.run_id)
    assert "checkpoint.pt is damaged" in capsys.readouterr().err
    uninterrupted = train_under_lock(reference.root, student.run_id)
    assert resumed.status == uninterrupted.status == RunStatus.DONE
    assert numbers(damaged, student.run_id) == numbers(reference, student.run_id)
    mine, theirs = (torch.load(s.run_dir(student.run_id) / "model.pt")["model"] for s in stores)
    assert all(torch.equal(mine[key], theirs[key]) for key in theirs)
    assert (checkpoint.with_name("checkpoint.damaged.pt")).exists()


def test_a_damaged_teacher_model_is_rebuilt_from_its_checkpoint(copy, capsys) -> None:
    suite, store, runs = copy
    teacher, kd = runs["Teacher"].run_id, runs["KD"].run_id
    model = store.run_dir(teacher) / "model.pt"
    original = torch.load(model)["model"]
    model.write_bytes(model.read_bytes()[:300])
    kd_before = numbers(store, kd)
    for name in ("result.json", "checkpoint.pt", "checkpoint.prev.pt", "metrics.jsonl"):
        (store.run_dir(kd) / name).unlink(missing_ok=True)
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    out = no_traceback(capsys.readouterr())
    assert f"teacher run {teacher}: {model} did not load; rebuilt from its checkpoint" in out
    rebuilt = torch.load(model)["model"]
    assert all(torch.equal(rebuilt[key], original[key]) for key in original)
    assert numbers(store, kd) == kd_before


def test_a_metrics_file_not_utf8_with_a_torn_line_is_repaired_by_report(copy, capsys) -> None:
    suite, store, runs = copy
    path = store.run_dir(runs["KD"].run_id) / "metrics.jsonl"
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"epoch": 3, "caf\xe9')
    assert main(["report", str(suite), "--results-dir", str(store.root)]) == 0
    no_traceback(capsys.readouterr())
    assert path.read_bytes() == whole  # rewritten from the checkpoint's epoch records
    assert path.with_name("metrics.damaged.jsonl").read_bytes().endswith(b"caf\xe9")


@pytest.mark.parametrize("failing", ["every write", "failed.json only"])
def test_a_full_disk_stops_the_suite_with_one_message(write_suite, tmp_path, monkeypatch, capsys, failing) -> None:
    import kdbench.results.store as store_module
    import kdbench.train

    real = store_module.atomic_write_bytes

    def full_disk(path: Path, data: bytes) -> None:
        if failing == "every write" or path.name == "failed.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(store_module, "atomic_write_bytes", full_disk)
    monkeypatch.setattr(kdbench.train, "atomic_write_bytes", full_disk)
    if failing == "failed.json only":  # a bug in training, whose record cannot be written

        def broken(*args, **kwargs):
            raise RuntimeError("a bug")

        monkeypatch.setattr(kdbench.train, "train_run", broken)
    suite = write_suite(tiny_suite())
    assert run_cli(str(suite), "--results-dir", str(tmp_path / "results")) == 1
    out = no_traceback(capsys.readouterr())
    assert "stopped: cannot write under the results root" in out and "No space left on device" in out
    assert out.count("stopped:") == 1 and "0 trained" in out
    if failing == "failed.json only":
        assert "(while recording RuntimeError: a bug)" in out
        assert "run the same command again to resume" in out


def test_a_run_finished_by_another_process_meanwhile_is_done_not_rewritten(copy, capsys, monkeypatch) -> None:
    """The race of two `kdbench run`: this one saw the runs pending, the other finished them before this one
    took their locks. They count as already done, and nothing of theirs is written again."""
    suite, store, runs = copy
    files = [store.run_dir(spec.run_id) / name for spec in runs.values() for name in ("result.json", "model.pt")]
    stamps = {path: path.stat().st_mtime_ns for path in files}
    looks: dict[str, int] = {}
    real_status = ResultStore.status

    def stale_status(self: ResultStore, run_id: str) -> RunStatus:
        looks[run_id] = looks.get(run_id, 0) + 1
        # the looks before training (kdbench run's data check, then the executor's): before the other
        # process finished it; later ones (a student asking after its teacher) see the files as they are
        return RunStatus.PENDING if looks[run_id] <= 2 else real_status(self, run_id)

    monkeypatch.setattr(ResultStore, "status", stale_status)
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    out = no_traceback(capsys.readouterr())
    assert "0 trained, 3 already done" in out and out.count("finished by another process meanwhile") == 3
    assert {path: path.stat().st_mtime_ns for path in files} == stamps


def test_students_of_a_teacher_trained_elsewhere_are_running_elsewhere_not_blocked(write_suite, tmp_path, capsys):
    suite = write_suite(tiny_suite())
    store = ResultStore(tmp_path / "results")
    teacher = plan(load_suite(suite)).runs[0]
    store.write_spec(teacher)
    with store.lock(teacher.run_id):  # another open file: to flock, another process
        code = run_cli(str(suite), "--results-dir", str(store.root))
    out = no_traceback(capsys.readouterr())
    assert code == 0 and "blocked" not in out.replace("0 blocked", "")
    # the teacher is left to its holder; KD waits for it (not blocked); Vanilla needs no teacher: trained
    assert out.count("is being trained by another process") == 1 and "another process is training it" in out
    assert "1 trained" in out and "2 running elsewhere" in out
    assert "run this command again later to pick up the rest" in out


def _failed_earlier(store: ResultStore, spec, error: Exception, stage: str) -> None:
    store.write_spec(spec)
    try:
        raise error
    except Exception as caught:
        write_failure(store.run_dir(spec.run_id), caught, expected=True, stage=stage)


def test_a_failure_whose_teacher_file_now_loads_is_retried_and_says_so(write_suite, tmp_path, capsys) -> None:
    from kdbench.models import create_model
    from kdbench.models.checkpoint import save_crd_checkpoint

    teacher_file = save_crd_checkpoint(create_model("resnet8", 4), tmp_path / "teacher.pth")
    suite = write_suite(
        tiny_suite(teachers={"resnet8": {"checkpoint": str(teacher_file)}}, methods={"KD": {"use": "kd"}})
    )
    store = ResultStore(tmp_path / "results")
    (kd,) = plan(load_suite(suite)).runs
    # as an earlier kdbench left it, when the file was missing (today's check refuses to start then)
    _failed_earlier(store, kd, RunFailed(f"teacher checkpoint not found: {teacher_file}"), stage="teacher")
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    out = no_traceback(capsys.readouterr())
    assert "1 trained" in out and "1 run(s) that had failed loading their teacher were trained again" in out
    assert store.status(kd.run_id) == RunStatus.DONE and (store.run_dir(kd.run_id) / "failed.1.json").exists()


def test_a_failure_for_another_reason_names_retry_failed(write_suite, tmp_path, capsys) -> None:
    suite = write_suite(tiny_suite(methods={"Vanilla": {"use": "vanilla"}}))
    store = ResultStore(tmp_path / "results")
    teacher = plan(load_suite(suite)).runs[0]
    _failed_earlier(store, teacher, NonFiniteLoss("loss is nan at epoch 1"), stage="epoch 1")
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 1
    out = no_traceback(capsys.readouterr())
    assert (
        "1 run(s) failed in an earlier run and were not trained again (kdbench status says why): "
        "fix the cause, then add --retry-failed to this command"
    ) in out


def test_plan_and_runs_csv_say_what_a_failed_teacher_holds_back(write_suite, tmp_path, capsys) -> None:
    import pandas as pd

    suite = write_suite(tiny_suite())
    store = ResultStore(tmp_path / "results")
    teacher = plan(load_suite(suite)).runs[0]
    _failed_earlier(store, teacher, NonFiniteLoss("loss is nan at epoch 1"), stage="epoch 1")
    assert main(["plan", str(suite), "--results-dir", str(store.root)]) == 0
    out = no_traceback(capsys.readouterr())
    # Vanilla needs no teacher: the one run to train; the teacher and KD wait for --retry-failed
    assert "1 to train" in out and "1 failed and 1 blocked by a failed teacher" in out and "--retry-failed" in out
    assert main(["report", str(suite), "--results-dir", str(store.root), "--no-plots"]) == 0
    capsys.readouterr()
    rows = pd.read_csv(store.root / "tiny" / "runs.csv").set_index("method")
    assert rows.loc["KD", "status"] == "blocked" and teacher.run_id in rows.loc["KD", "failure"]


def test_report_says_what_it_repaired(copy, capsys) -> None:
    suite, store, runs = copy
    kd = runs["KD"].run_id
    path = store.run_dir(kd) / "metrics.jsonl"
    path.write_bytes(path.read_bytes() + b"\xff\xfe{not utf-8\n")
    assert main(["report", str(suite), "--results-dir", str(store.root), "--no-plots"]) == 0
    err = no_traceback(capsys.readouterr())
    assert f"kdbench: repaired {kd}:" in err and "metrics.damaged.jsonl" in err


def test_status_says_interrupted_once_with_the_epochs(write_suite, tmp_path, capsys) -> None:
    from kdbench.executors.training import train_under_lock

    suite = write_suite(tiny_suite(methods={"Vanilla": {"use": "vanilla"}}))
    store = ResultStore(tmp_path / "results")
    teacher = plan(load_suite(suite)).runs[0]
    store.write_spec(teacher)
    train_under_lock(store.root, teacher.run_id, stop_after_epochs=1)
    main(["status", str(suite), "--results-dir", str(store.root)])
    out = capsys.readouterr().out
    assert f"interrupted {teacher.run_id}  teacher resnet8 seed 0: 1 epoch(s) done" in out
    assert "interrupted: interrupted" not in out


def test_the_report_legend_explains_pending_k_of_n() -> None:
    from kdbench.results.report import Report

    legend = Report.legend(type("Fake", (), {"alpha": 0.05})())
    assert "(k/n): k of n seeds finished" in legend and "pending k/n: k of n seeds pending" in legend


@pytest.mark.parametrize("name", ["cifar100", "mnist"])
def test_a_failed_download_does_not_suggest_download_again_and_names_the_data_root(
    name: str, tmp_path: Path, monkeypatch
) -> None:
    import torchvision.datasets

    from kdbench.data import load_dataset
    from kdbench.errors import DataError

    def offline(self, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets.CIFAR100, "download", offline)
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(DataError) as failed:
        load_dataset(name, root=str(tmp_path), download=True)
    message = str(failed.value)
    assert "Could not download" in message and "network unreachable" in message
    assert "download: true" not in message
    assert "--data-root DIR" in message and "dataset.root=DIR" in message and "$KDBENCH_DATA" in message
    with pytest.raises(DataError) as missing:  # not found, no download tried: both hints
        load_dataset(name, root=str(tmp_path / "empty"))
    assert "download: true" in str(missing.value) and "--data-root DIR" in str(missing.value)


def test_an_image_folder_not_found_names_the_data_root(tmp_path: Path) -> None:
    from kdbench.data import load_dataset
    from kdbench.errors import DataError

    with pytest.raises(DataError) as missing:
        load_dataset("image_csv", root=str(tmp_path))
    message = str(missing.value)
    assert "not found" in message and "--data-root DIR" in message and "$KDBENCH_DATA" in message
    assert "download: true" not in message  # image_csv has no download


def test_a_refused_submission_leaves_no_pickle(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("submitit")
    import contextlib

    from kdbench.executors.profile import load_profile
    from kdbench.executors.slurm import submission
    from kdbench.executors.slurm.commands import SlurmError

    store = ResultStore(tmp_path / "results")
    runs = plan(load_suite(_suite_file(tmp_path))).runs
    jobs = store.root.resolve() / "slurm" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "kept.pkl").write_bytes(b"an earlier job's")

    class Refusing:
        """What submitit does when sbatch fails: pickles written, then the error."""

        @contextlib.contextmanager
        def batch(self):
            yield
            (jobs / "0123abcd.pkl").write_bytes(b"pickle")
            (jobs / ".submission_file_0123abcd.sh").write_text("#!/bin/sh")
            raise RuntimeError("sbatch: error: invalid partition specified: gpu")

        def submit(self, job):
            return None

    monkeypatch.setattr(submission, "array_executor", lambda *args, **kwargs: Refusing())
    summary = submission.SubmitSummary()
    with pytest.raises(SlurmError, match="invalid partition"):
        submission._submit_arrays(store, load_profile("local"), runs[:1], None, None, None, summary)
    assert sorted(path.name for path in jobs.iterdir()) == ["kept.pkl"]


def _suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(tiny_suite()))
    return path


def test_a_read_only_results_root_is_refused_before_training_and_still_readable(
    write_suite, tmp_path: Path, monkeypatch, capsys
) -> None:
    import os
    import tempfile

    import kdbench.results.store as store_module

    suite = write_suite(tiny_suite())
    root = tmp_path / "read-only"
    root.mkdir()
    root.chmod(0o555)
    if os.geteuid() == 0:  # root writes through permissions: refuse writes as a read-only mount would
        real = tempfile.mkstemp

        def read_only(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == root:
                raise OSError(errno.EROFS, "Read-only file system")
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(store_module.tempfile, "mkstemp", read_only)
    assert run_cli(str(suite), "--results-dir", str(root)) == 2
    err = no_traceback(capsys.readouterr())
    assert f"--results-dir {root}: cannot write there (" in err and "name a folder you can write to" in err
    assert main(["status", str(suite), "--results-dir", str(root)]) == 0  # reading needs no write
    assert "3 pending" in no_traceback(capsys.readouterr())


SLOW_ENOUGH = {"schedule": {"epochs": 6, "batch_size": 16, "lr": 0.05, "milestones": [4], "lr_decay": 0.1}}


def _start(suite: Path, root: Path, workers: int):
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "kdbench", "run", str(suite), "--results-dir", str(root), "--quiet"]
    environment = {**os.environ, "KDBENCH_CPU_THREADS": "1"}
    return subprocess.Popen(
        [*command, "--workers", str(workers), "--no-report"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        start_new_session=True,  # its own process group: a terminal's Ctrl-C reaches every process of it
    )


def _wait_for_an_epoch(root: Path, process, limit_s: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if any(path.stat().st_size for path in root.glob("runs/*/metrics.jsonl")):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    raise AssertionError("no epoch finished in time")


@pytest.mark.parametrize(
    ("how", "workers", "said", "resume"),
    [
        pytest.param(
            "ctrl-c to the process group",
            2,
            "interrupted: finished epochs are checkpointed",
            True,
            marks=pytest.mark.slow,  # ~25 s: two suites trained, one of them interrupted and resumed
        ),
        ("sigterm to kdbench", 2, "terminated (SIGTERM): finished epochs are checkpointed", False),
        ("kill -INT of kdbench", 1, "interrupted: finished epochs are checkpointed", False),
    ],
)
def test_a_signal_stops_at_once_says_how_to_resume_and_the_resumed_suite_is_identical(
    write_suite, tmp_path: Path, how: str, workers: int, said: str, resume: bool
) -> None:
    """Ctrl-C (every process of the group), SIGTERM or SIGINT to kdbench alone: exit 130 within seconds
    (runs in flight are not waited for), no traceback from any process, the command to resume; the
    resumed suite's numbers and weights are those of a suite never interrupted (checked once: resuming
    is the same whichever signal stopped it)."""
    import os
    import signal
    import time

    from kdbench.executors.local import run_local

    suite = write_suite(tiny_suite(**SLOW_ENOUGH))
    root = tmp_path / "results"
    process = _start(suite, root, workers)
    try:
        _wait_for_an_epoch(root, process)
        sent = time.monotonic()
        if how.startswith("ctrl-c"):
            os.killpg(process.pid, signal.SIGINT)
        else:
            os.kill(process.pid, signal.SIGTERM if how.startswith("sigterm") else signal.SIGINT)
        out, err = process.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    assert "Traceback" not in out + err and said in err
    assert f"to resume, run the same command: kdbench run {suite}" in err
    assert took < 5.0, f"took {took:.1f} s to stop"
    store = ResultStore(root)
    runs = plan(load_suite(suite)).runs
    assert any(store.status(spec.run_id) != RunStatus.DONE for spec in runs), "it finished before the signal"
    if not resume:
        return
    again = _start(suite, root, workers)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    reference = ResultStore(tmp_path / "reference")
    run_local(runs, reference, progress=False, log=lambda line: None)
    for spec in runs:
        assert numbers(store, spec.run_id) == numbers(reference, spec.run_id), spec.method
        mine, theirs = (torch.load(s.run_dir(spec.run_id) / "model.pt")["model"] for s in (store, reference))
        assert all(torch.equal(mine[key], theirs[key]) for key in theirs)


def test_two_runs_of_one_suite_at_once_train_each_run_once_and_block_nothing(write_suite, tmp_path: Path) -> None:
    """Two `kdbench run --workers 1` of one suite started together: between them every run is trained
    exactly once, neither rewrites the other's runs or calls its students blocked, both exit 0, and one
    that left runs to the other says to run it again later."""
    import re

    suite = write_suite(tiny_suite(**SLOW_ENOUGH))
    root = tmp_path / "results"
    processes = [_start(suite, root, workers=1) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        assert "Traceback" not in out + err and "blocked " not in out.replace("0 blocked", "")
    trained = [int(re.search(r"(\d+) trained", out).group(1)) for out, _ in outputs]
    assert sum(trained) == 3, [out for out, _ in outputs]
    for out, _ in outputs:
        if "running elsewhere" in out and not re.search(r"0 running elsewhere", out):
            assert "run this command again later to pick up the rest" in out
    store = ResultStore(root)
    assert all(store.status(spec.run_id) == RunStatus.DONE for spec in plan(load_suite(suite)).runs)
