"""Executors behind one interface and a registry: choosing one, a third one as one module, local status and
cancel, and everything but SLURM submission importable without submitit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

import kdbench.executors
from kdbench.cli import main
from kdbench.executors import EXECUTORS, Executor, ExecutorEntry, RunOptions, get_executor
from kdbench.lifecycle import RunState, RunStatus
from kdbench.registry import Registry, UnknownNameError
from kdbench.results.store import ResultStore
from kdbench.suite import RunSpec
from tests.conftest import tiny_suite


def test_registered_executors_load_and_agree_on_their_record_file() -> None:
    assert EXECUTORS.names() == ["local", "slurm"]
    for name, entry in EXECUTORS.items():
        executor = get_executor(name)
        assert isinstance(executor, Executor) and executor.name == name
        assert executor.record_file == entry.record_file


def test_an_unknown_executor_names_the_nearest(write_suite, tmp_path: Path, capsys) -> None:
    with pytest.raises(
        UnknownNameError, match="Unknown executor 'slrum'. Did you mean 'slurm'\\? Available: slurm, local"
    ):
        get_executor("slrum")
    suite = str(write_suite(tiny_suite()))
    assert main(["run", suite, "--results-dir", str(tmp_path / "r"), "--executor", "locl"]) == 2
    assert "Unknown executor 'locl'. Did you mean 'local'?" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_options_of_another_executor_are_refused(write_suite, tmp_path: Path, capsys) -> None:
    suite = str(write_suite(tiny_suite()))
    assert main(["run", suite, "--results-dir", str(tmp_path / "r"), "--profile", "local"]) == 2
    assert "--profile is for --executor slurm" in capsys.readouterr().err
    command = ["run", suite, "--results-dir", str(tmp_path / "r"), "--executor", "slurm", "--profile", "lokal"]
    assert main(command) == 2
    assert "Unknown SLURM profile 'lokal'" in capsys.readouterr().err


# --- a third executor: one module with an EXECUTOR, one registry entry -----------------------------------


@dataclass
class Queued:
    """What the made-up executor's submit returns (the Submission protocol)."""

    run_ids: list[str]
    finished: bool = False

    def describe(self) -> str:
        return f"queued {len(self.run_ids)} runs in the notebook"

    @property
    def exit_code(self) -> int:
        return 0


class NotebookExecutor(Executor):
    """Writes each run it takes into notebook.json beside the run, and calls it pending there."""

    name = "notebook"
    record_file = "notebook.json"

    def submit(self, runs: Sequence[RunSpec], store: ResultStore, options: RunOptions, log=print) -> Queued:
        for spec in runs:
            (store.write_spec(spec) / self.record_file).write_text(json.dumps({"device": options.device}))
        return Queued([spec.run_id for spec in runs])

    def states(self, store: ResultStore, runs: Sequence[RunSpec]) -> dict[str, RunState]:
        return {spec.run_id: RunState(RunStatus.PENDING, "page-1", "in the notebook", job_active=True) for spec in runs}

    def cancel(self, store: ResultStore, runs: Sequence[RunSpec], log=print) -> dict[str, str]:
        return {spec.run_id: "page-1" for spec in runs}


EXECUTOR = NotebookExecutor()


def test_a_third_executor_is_one_module_and_one_entry(write_suite, tmp_path: Path, capsys, monkeypatch) -> None:
    registry: Registry[ExecutorEntry] = Registry("executor")
    for name, entry in EXECUTORS.items():
        registry.register(name)(entry)
    registry.register("notebook")(ExecutorEntry(__name__, "notebook.json", "a made-up executor"))
    monkeypatch.setattr(kdbench.executors, "EXECUTORS", registry)
    suite = str(write_suite(tiny_suite()))
    results = ["--results-dir", str(tmp_path / "r")]

    assert main(["run", suite, *results, "--executor", "notebook", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "executor notebook" in out and "queued 3 runs in the notebook" in out
    assert "| KD" not in out  # not finished, no --wait: no report yet
    records = list((tmp_path / "r" / "runs").glob("*/notebook.json"))
    assert len(records) == 3 and json.loads(records[0].read_text()) == {"device": "cpu"}

    assert main(["status", suite, *results, "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "3 pending" in out and out.count("page-1") == 3  # asked the executor that took the runs
    assert main(["cancel", suite, *results]) == 0
    assert "cancelled 1 job(s) (3 runs)" in capsys.readouterr().out


# --- local runs: status and cancel ------------------------------------------------------------------------


def test_status_and_cancel_of_local_runs(write_suite, tmp_path: Path, capsys) -> None:
    suite = str(write_suite(tiny_suite(schedule={"epochs": 1, "batch_size": 16, "lr": 0.05, "milestones": [1]})))
    results = ["--results-dir", str(tmp_path / "r")]
    assert main(["run", suite, *results, "--quiet", "--no-report", "--workers", "1"]) == 0
    capsys.readouterr()
    store = ResultStore(tmp_path / "r")
    run_ids = sorted(path.name for path in (store.root / "runs").iterdir())
    busy = run_ids[0]
    (store.run_dir(busy) / "result.json").unlink()

    with store.lock(busy):  # as a `kdbench run` in another shell would hold it
        assert main(["status", suite, *results]) == 0
        assert "2 done, 1 running" in capsys.readouterr().out
        assert main(["cancel", suite, *results]) == 0
        out = capsys.readouterr().out
        assert f"running  {busy}" in out and f"pid {os.getpid()} on {os.uname().nodename}" in out
        assert "nothing to cancel" in out
        assert store.is_locked(busy)  # named, not stopped


def test_everything_but_slurm_submission_imports_without_submitit(tmp_path: Path) -> None:
    # A GPU node without submitit: training, the local executor, reports and `kdbench status` of SLURM runs.
    probe = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        sys.modules["submitit"] = None  # any import of it fails
        import kdbench
        needs_submitit = {{"kdbench.executors.slurm.jobs", "kdbench.executors.slurm.submission"}}
        for module in pkgutil.walk_packages(kdbench.__path__, "kdbench."):
            if module.name.startswith(("kdbench.executors", "kdbench.cli", "kdbench.results", "kdbench.lifecycle",
                                       "kdbench.train")) and module.name not in needs_submitit:
                importlib.import_module(module.name)
        from kdbench.executors import RunOptions, get_executor
        from kdbench.results.store import ResultStore
        slurm = get_executor("slurm")
        print(slurm.states(ResultStore({str(tmp_path)!r}), []))
        try:
            slurm.submit([], ResultStore({str(tmp_path)!r}), RunOptions())
        except Exception as error:
            print(type(error).__name__, error)
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "{}",
        "ExecutorError the SLURM executor needs submitit: pip install 'submitit>=1.5'",
    ]
