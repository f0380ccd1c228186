"""Executors: where runs train (this machine, or a SLURM cluster through submitit), behind one interface.

``EXECUTORS`` names each executor and the module that holds it, so the CLI can list and choose one
without importing it (the local executor imports torch, the SLURM one submitit). Adding an executor:
one module with an ``Executor`` subclass (``kdbench.executors.base``) exposed as ``EXECUTOR`` there,
and one line here. ``states`` and ``cancel`` ask, for each run, the executor that last took it (the
one whose record file its run directory holds; the local executor otherwise).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kdbench.executors.base import Executor, ExecutorError, Log, RunOptions, Submission
from kdbench.lifecycle import RunState, with_blocked_students
from kdbench.registry import Registry

if TYPE_CHECKING:
    from kdbench.results.store import ResultStore
    from kdbench.suite import RunSpec

__all__ = [
    "EXECUTORS",
    "Executor",
    "ExecutorEntry",
    "ExecutorError",
    "RunOptions",
    "Submission",
    "cancel_runs",
    "executor_of",
    "get_executor",
    "run_states",
]


@dataclass(frozen=True)
class ExecutorEntry:
    """Where an executor lives, and what it leaves in a run directory, known without importing it."""

    #: the module whose ``EXECUTOR`` attribute is the executor
    module: str
    #: the file a run's directory holds once this executor took the run (None: it leaves none)
    record_file: str | None
    #: one line for ``kdbench run --help``
    help: str


EXECUTORS: Registry[ExecutorEntry] = Registry("executor")
EXECUTORS.register("local")(
    ExecutorEntry("kdbench.executors.local", None, "train here, --workers runs at a time (the default)")
)
EXECUTORS.register("slurm")(
    ExecutorEntry("kdbench.executors.slurm", "slurm.json", "submit job arrays through submitit (--profile)")
)
#: the executor of runs no other executor has a record of
DEFAULT_EXECUTOR = "local"


def get_executor(name: str) -> Executor:
    """The executor called ``name`` (imports its module); an unknown name raises UnknownNameError with the
    nearest names."""
    entry = EXECUTORS.get(name)
    executor = importlib.import_module(entry.module).EXECUTOR
    if executor.record_file != entry.record_file:  # the two declarations must agree
        raise RuntimeError(f"{entry.module}: record_file {executor.record_file!r} != {entry.record_file!r}")
    return executor


def executor_of(store: ResultStore, run_id: str) -> str:
    """The executor that last took the run: the newest record file in its directory, else the default."""
    newest, name = -1, DEFAULT_EXECUTOR
    for candidate, entry in EXECUTORS.items():
        if entry.record_file is None:
            continue
        try:
            written = (store.run_dir(run_id) / entry.record_file).stat().st_mtime_ns
        except FileNotFoundError:
            continue
        if written > newest:
            newest, name = written, candidate
    return name


def _by_executor(store: ResultStore, runs: Sequence[RunSpec]) -> dict[str, list[RunSpec]]:
    groups: dict[str, list[RunSpec]] = {}
    seen: set[str] = set()
    for spec in runs:
        if spec.run_id not in seen:
            seen.add(spec.run_id)
            groups.setdefault(executor_of(store, spec.run_id), []).append(spec)
    return groups


def run_states(store: ResultStore, runs: Sequence[RunSpec]) -> dict[str, RunState]:
    """Every distinct run's state, each from the executor that took it; students of failed teachers blocked
    whichever executor trained the teacher. Imports only the executors that have runs here."""
    states: dict[str, RunState] = {}
    for name, group in _by_executor(store, runs).items():
        states.update(get_executor(name).states(store, group))
    return with_blocked_students(runs, states)


def cancel_runs(store: ResultStore, runs: Sequence[RunSpec], log: Log = print) -> dict[str, str]:
    """Ask each run's executor to cancel it; run id -> the job id cancelled (runs with nothing to cancel
    are absent)."""
    cancelled: dict[str, str] = {}
    for name, group in _by_executor(store, [spec for spec in runs if not spec.not_applicable]).items():
        cancelled.update(get_executor(name).cancel(store, group, log))
    return cancelled
