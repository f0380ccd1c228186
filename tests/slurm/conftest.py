"""The real SLURM test cluster for tests marked ``slurm`` (run them with ``pytest -m slurm``).

The ``cluster`` fixture uses the cluster that ``$SLURM_CONF`` points at when ``sinfo`` answers, and
otherwise starts one with ``slurm/local-cluster.sh start`` (and stops it at the end). It skips only
where that cannot work: not root, or neither SLURM nor apt-get installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from kdbench.executors.profile import Profile, load_profile
from kdbench.executors.slurm import RunState, slurm_states
from kdbench.results.store import ResultStore
from kdbench.suite import RunSpec, load_suite, plan

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "slurm" / "local-cluster.sh"
FINAL = {"done", "failed", "cancelled", "blocked"}


def _sinfo_answers() -> bool:
    if not os.environ.get("SLURM_CONF") or shutil.which("sinfo") is None:
        return False
    try:
        answer = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return False
    return answer.returncode == 0 and bool(answer.stdout.strip())


class Cluster:
    """Helpers for driving the test cluster: suites, profiles, bounded waits, squeue/sacct/scontrol."""

    def __init__(self, slurm_conf: str):
        self.slurm_conf = slurm_conf

    def suite(self, directory: Path, **changes: Any) -> tuple[Path, list[RunSpec]]:
        """A tiny digits suite (resnet8 teacher and student, 2 epochs) written to ``directory``, and its plan."""
        document = {
            "name": "slurm-tiny",
            "dataset": "digits",
            "schedule": {"epochs": 2, "batch_size": 64, "lr": 0.05, "milestones": [1]},
            "seeds": [0],
            "teachers": {"resnet8": {}},
            "pairs": [{"teacher": "resnet8", "student": "resnet8", "self_distillation": True}],
            "methods": {"Vanilla": {"use": "vanilla"}, "KD": {"use": "kd"}},
        }
        document.update(changes)
        path = directory / "suite.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path, plan(load_suite(path))

    def profile(self, **overrides: Any) -> Profile:
        """The shipped local profile with one CPU per run, so two jobs share the 2-CPU node."""
        return load_profile(
            REPO / "kdbench" / "executors" / "slurm" / "profiles" / "local.yaml",
            {"cpus_per_run": 1, "mem_gb": 1, **overrides},
        )

    def wait_for(self, what: str, condition: Callable[[], Any], timeout_s: float, every_s: float = 0.5) -> Any:
        """Poll ``condition`` until it returns something truthy; fail the test after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
            time.sleep(every_s)

    def wait_final(self, store: ResultStore, runs: Sequence[RunSpec], timeout_s: float) -> dict[str, RunState]:
        """Wait until every run is done, failed, cancelled or blocked; their states."""

        def settled() -> dict[str, RunState] | None:
            states = slurm_states(store, runs)
            return states if all(state.status in FINAL for state in states.values()) else None

        try:
            return self.wait_for("runs to finish", settled, timeout_s, every_s=1.0)
        except pytest.fail.Exception:
            states = {run_id: f"{s.status} {s.job_id} {s.detail}" for run_id, s in slurm_states(store, runs).items()}
            raise pytest.fail.Exception(f"runs did not finish in {timeout_s:.0f} s: {states}") from None

    def command(self, *args: str) -> str:
        """A SLURM command's output (bounded: SLURM clients retry for minutes when slurmctld is down)."""
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{' '.join(args)} failed: {done.stderr}"
        return done.stdout

    def squeue(self, job_id: str) -> tuple[str, str] | None:
        """(state, reason) of a job the controller still holds, or None."""
        out = subprocess.run(
            ["squeue", "-h", "-r", "-j", job_id.split("_")[0], "-o", "%i|%T|%r"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        for line in out.splitlines():
            job, state, reason = line.split("|")
            if job == job_id:
                return state, reason
        return None

    def sacct_times(self, job_id: str) -> tuple[str, str]:
        """(start, end) of a finished job, as sacct prints them (ISO, sortable)."""
        line = self.command("sacct", "-n", "-P", "-X", "-j", job_id, "-o", "Start,End").strip().splitlines()[-1]
        start, end = line.split("|")
        return start, end


@pytest.fixture(autouse=True)
def cancel_leftover_jobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """After each test, cancel whatever jobs it submitted that still run (a failed test leaves some).

    Only for tests on the cluster: the offline ones record made-up job ids of a fake sbatch."""
    yield
    if not request.node.get_closest_marker("slurm"):
        return
    job_ids = sorted({json.loads(path.read_text())["job_id"] for path in tmp_path.rglob("slurm.json")})
    if job_ids and shutil.which("scancel"):
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if _sinfo_answers():
        yield Cluster(os.environ["SLURM_CONF"])
        return
    if os.geteuid() != 0:
        pytest.skip("no SLURM cluster answers, and starting the local one (slurm/local-cluster.sh) needs root")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("no SLURM cluster answers, SLURM is not installed and there is no apt-get to install it")
    started = subprocess.run([str(CLUSTER_SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        pytest.fail(f"slurm/local-cluster.sh start failed:\n{started.stderr[-4000:]}")
    exports = [line for line in started.stdout.splitlines() if line.startswith("export SLURM_CONF=")]
    assert exports, f"local-cluster.sh printed no SLURM_CONF line: {started.stdout!r}"
    slurm_conf = exports[-1].split("=", 1)[1]
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = slurm_conf  # the jobs inherit it (submitit's in-job requeue needs it)
    try:
        yield Cluster(slurm_conf)
    finally:
        if not os.environ.get("KDBENCH_SLURM_KEEP"):
            subprocess.run([str(CLUSTER_SCRIPT), "stop"], capture_output=True, timeout=300)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
