"""Train one run under its lock: the one way every executor trains (this process, a local worker, a
SLURM job, a packed SLURM job's run process), and the worker-process guard they share.

``train_under_lock`` takes the run's exclusive lock (a run another process holds is left to it), returns
a finished run's result without training, calls ``kdbench.train.train_run`` (which resumes from the
last epoch checkpoint and records its own failures), and records an unexpected error in failed.json
with its traceback, so the suite goes on and ``kdbench status`` can say why.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from kdbench.lifecycle import RunStatus
from kdbench.results.store import FAILURE_FILE, ResultStore, RunLocked, write_failure


@dataclass(frozen=True)
class TrainingOutcome:
    """How one call ended: done (``result``), interrupted (``stop_after_epochs``), running elsewhere (the
    lock was taken) or failed (``reason``; failed.json has it)."""

    status: RunStatus
    result: dict | None = None
    reason: str = ""


#: the reason given for a run whose lock another process holds
LOCKED_ELSEWHERE = "another process is training it"


def train_under_lock(
    store_root: str | Path,
    run_id: str,
    *,
    device: str | None = None,
    data_root: str | None = None,
    progress: bool = False,
    stop_after_epochs: int | None = None,
    reraise: bool = False,
) -> TrainingOutcome:
    """Train (or resume, or just read back) one run while holding its lock.

    ``reraise``: after recording a failure, raise it again (a SLURM job must fail, with the traceback in
    its log, so that ``afterok`` students do not start); a locked run then raises RunLocked. Without it
    every outcome is returned. Ctrl-C and SystemExit always propagate (every finished epoch is saved).
    """
    from kdbench.train import RunFailed, train_run

    store = ResultStore(store_root)
    run_dir = store.run_dir(run_id)
    try:
        with store.lock(run_id):
            finished = store.result(run_id)
            if finished is not None:  # done meanwhile by another process, or before a requeue
                return TrainingOutcome(RunStatus.DONE, finished)
            result = train_run(
                run_dir, device=device, data_root=data_root, progress=progress, stop_after_epochs=stop_after_epochs
            )
    except RunLocked:
        if reraise:
            raise
        return TrainingOutcome(RunStatus.RUNNING, reason=LOCKED_ELSEWHERE)
    except RunFailed as error:  # train_run has written failed.json
        if reraise:
            raise
        return TrainingOutcome(RunStatus.FAILED, reason=str(error))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # a bug or a broken environment: record it, go on with the suite
        record = write_failure(run_dir, error, expected=False)
        if reraise:
            raise
        return TrainingOutcome(RunStatus.FAILED, reason=f"{record['reason']} (see {run_dir / FAILURE_FILE})")
    if result.get("status") == RunStatus.DONE:
        return TrainingOutcome(RunStatus.DONE, result)
    return TrainingOutcome(RunStatus.INTERRUPTED, result)


def die_with_parent(parent_pid: int) -> None:
    """Initializer of a worker process: end when the process that started it ends, even by SIGKILL.

    Otherwise a worker of a killed ``kdbench run`` (or of a packed SLURM job) trains on alone, holding
    its run's lock, and the same command run again finds the run busy (and its students blocked). Linux
    only (prctl); elsewhere only a parent already gone is noticed.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        set_parent_death_signal = 1  # PR_SET_PDEATHSIG
        ctypes.CDLL(None, use_errno=True).prctl(set_parent_death_signal, int(signal.SIGKILL))
    if os.getppid() != parent_pid:  # the parent died before the signal was asked for
        os._exit(1)
