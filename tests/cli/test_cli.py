"""The command line end to end on a tiny suite: plan, run, status, report; user errors exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kdbench.cli import main
from tests.conftest import tiny_suite


def kdbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdbench", *args], capture_output=True, text=True, timeout=300)


def test_plan_run_status_report_end_to_end(write_suite, tmp_path, capsys) -> None:
    suite = str(write_suite(tiny_suite(seeds=[0, 1])))
    results = ["--results-dir", str(tmp_path / "results")]

    assert main(["plan", suite, *results]) == 0
    out = capsys.readouterr().out
    assert "5 runs (1 teacher, 4 students): 0 done, 5 to train" in out
    assert "FLOPs" in out and "resnet8" in out and "pending" in out

    assert main(["run", suite, *results, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "5 trained, 0 already done, 0 failed" in out
    assert "| KD " in out and "(2)" in out  # mean +- std over the two seeds

    assert main(["run", suite, *results, "--quiet"]) == 0  # again: nothing to train
    assert "0 trained, 5 already done" in capsys.readouterr().out

    assert main(["status", suite, *results]) == 0
    assert "5 done" in capsys.readouterr().out

    assert main(["report", suite, *results]) == 0
    assert "resnet8" in capsys.readouterr().out.replace("ResNet8", "resnet8")
    assert (tmp_path / "results" / "tiny").is_dir()


def test_overrides_after_options_and_a_changed_parameter_makes_new_runs(write_suite, tmp_path, capsys) -> None:
    suite = str(write_suite(tiny_suite()))
    results = ["--results-dir", str(tmp_path / "r")]
    assert main(["run", suite, *results, "--quiet", "--no-report", "schedule.epochs=1"]) == 0
    assert "3 trained" in capsys.readouterr().out
    assert main(["plan", suite, *results, "schedule.epochs=1", "methods.KD.kd.temperature=2"]) == 0
    out = capsys.readouterr().out
    assert "status: 2 done, 1 pending" in out


def test_a_malformed_suite_exits_2_naming_the_key_without_traceback(write_suite) -> None:
    suite = write_suite(tiny_suite(schedule={"epochs": "ten"}, methods={"KD": {"use": "kdd"}}))
    for command in ("plan", "run", "status", "report"):
        done = kdbench(command, str(suite))
        assert done.returncode == 2, done.stderr
        assert "schedule.epochs: expected a positive integer, got 'ten' (str)" in done.stderr
        assert "methods.KD.use: Unknown method 'kdd'. Did you mean 'kd'?" in done.stderr
        assert "Traceback" not in done.stderr


def test_missing_suite_file_and_bad_override_exit_2(tmp_path, write_suite) -> None:
    done = kdbench("plan", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2 and "suite file not found" in done.stderr and "Traceback" not in done.stderr
    done = kdbench("plan", str(write_suite(tiny_suite())), "schedule.epochs")
    assert done.returncode == 2 and "key.path=value" in done.stderr


@pytest.mark.parametrize("command", ["plan", "run", "status", "report"])
def test_every_command_has_help_with_an_example(command) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0


def test_help_lists_the_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("plan", "run", "status", "report"):
        assert command in out


def test_smoke_suite_validates_and_plans(capsys) -> None:
    smoke = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"
    assert main(["plan", str(smoke), "--results-dir", "/nonexistent-results"]) == 0
    assert "7 runs (1 teacher, 6 students): 0 done, 7 to train" in capsys.readouterr().out


def test_missing_data_stops_run_before_any_training(write_suite, tmp_path) -> None:
    document = tiny_suite(dataset={"name": "cifar10", "root": str(tmp_path / "nodata")})
    results = tmp_path / "results"
    done = kdbench("run", str(write_suite(document)), "--results-dir", str(results))
    assert done.returncode == 2
    assert "CIFAR-10 not found" in done.stderr and "cifar-10-batches-py" in done.stderr
    assert "https://www.cs.toronto.edu/~kriz/cifar" in done.stderr and "Traceback" not in done.stderr
    assert not results.exists()  # nothing was written, nothing trained


def test_workers_auto_is_one_run_per_core_on_cpu_and_validated(write_suite, tmp_path, capsys, monkeypatch) -> None:
    from kdbench.executors import local

    monkeypatch.setattr(local.os, "sched_getaffinity", lambda _pid: {0, 1, 2}, raising=False)
    monkeypatch.setenv("KDBENCH_CPU_THREADS", "1")
    assert local.auto_workers("cpu")[0] == 3
    monkeypatch.setenv("KDBENCH_CPU_THREADS", "2")
    assert local.auto_workers("cpu")[0] == 1  # three cores hold one run of two threads
    monkeypatch.setattr(local.os, "sched_getaffinity", lambda _pid: set(range(64)), raising=False)
    assert local.auto_workers("cpu")[0] == local.MAX_AUTO_CPU_WORKERS

    suite = str(write_suite(tiny_suite()))
    assert main(["run", suite, "--results-dir", str(tmp_path / "r"), "--workers", "0"]) == 2
    assert "--workers must be a positive integer or auto, got '0'" in capsys.readouterr().err


def test_usable_cores_honour_a_container_cpu_quota(tmp_path, monkeypatch) -> None:
    from kdbench.executors import local

    monkeypatch.setattr(local.os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    quota = tmp_path / "cpu.max"
    quota.write_text("400000 100000\n")  # 4 CPUs' worth of time
    assert local.usable_cores(str(quota)) == 4
    quota.write_text("max 100000\n")  # no quota
    assert local.usable_cores(str(quota)) == 16
    assert local.usable_cores(str(tmp_path / "absent")) == 16
