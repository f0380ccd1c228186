"""Train one run under its lock: the one way every executor trains (this process, a local worker, a
SLURM job, a packed SLURM job's run process), and the worker-process guard they share.

``train_under_lock`` takes the run's exclusive lock (a run another process holds is left to it), and
then, holding it, looks again: a run finished meanwhile (by another process) is returned as it is,
never rewritten. It repairs what a crash or a bad copy damaged (a result.json that does not read is set
aside and rebuilt from the checkpoint when that holds every epoch, else the run resumes or retrains; a
torn or non-UTF-8 metrics.jsonl is rewritten from the checkpoint; a teacher run's damaged model.pt is
rebuilt from that teacher's checkpoint), calls ``kdbench.train.train_run`` (which resumes from the last
good epoch checkpoint and records its own failures), and records an unexpected error in failed.json with
its traceback, so the suite goes on and ``kdbench status`` can say why. A full disk or a read-only
results root raises ``ResultsUnwritable`` instead: every later run would fail the same way.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from kdbench.errors import count_of
from kdbench.lifecycle import RunStatus
from kdbench.results.store import (
    FAILURE_FILE,
    ResultStore,
    ResultsUnwritable,
    RunLocked,
    is_unwritable,
    write_failure,
)
from kdbench.suite import RunSpec


@dataclass(frozen=True)
class TrainingOutcome:
    """How one call ended: done (``result``), interrupted (``stop_after_epochs``), running elsewhere (the
    lock was taken) or failed (``reason``; failed.json has it). ``already_done``: another process had
    finished it (nothing was trained or written here). ``notes``: what was repaired, for the terminal.
    ``epochs_trained``: epochs this call trained (0 for a done run: its result was rebuilt from a checkpoint
    that held every epoch); None where no training was started here."""

    status: RunStatus
    result: dict | None = None
    reason: str = ""
    already_done: bool = False
    notes: tuple[str, ...] = ()
    epochs_trained: int | None = None


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
    from kdbench.train import CallReport, RunFailed, train_run

    store = ResultStore(store_root)
    run_dir = store.run_dir(run_id)
    notes: list[str] = []
    report = CallReport()
    try:
        with store.lock(run_id):
            # looked at again holding the lock: another process may have finished it since we last did
            finished = store.result(run_id)
            if finished is not None:  # done meanwhile by another process, or before a requeue
                return TrainingOutcome(RunStatus.DONE, finished, already_done=True)
            notes = repair_before_training(store, run_id, device=device, data_root=data_root)
            result = train_run(
                run_dir,
                device=device,
                data_root=data_root,
                progress=progress,
                stop_after_epochs=stop_after_epochs,
                report=report,
            )
    except RunLocked:
        if reraise:
            raise
        return TrainingOutcome(RunStatus.RUNNING, reason=LOCKED_ELSEWHERE)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:
        if is_unwritable(error) or isinstance(error, ResultsUnwritable):
            raise _unwritable(store, error) from None
        if not isinstance(error, RunFailed):  # a bug or a broken environment: record it, go on with the suite
            try:
                record = write_failure(run_dir, error, expected=False)
            except OSError as unwritable:  # not even failed.json can be written
                raise _unwritable(store, unwritable, error) from None
            if reraise:
                raise
            reason = f"{record['reason']} (see {run_dir / FAILURE_FILE})"
            return TrainingOutcome(RunStatus.FAILED, reason=reason, notes=tuple(notes))
        if reraise:  # train_run has written failed.json
            raise
        return TrainingOutcome(RunStatus.FAILED, reason=str(error), notes=tuple(notes))
    status = RunStatus.DONE if result.get("status") == RunStatus.DONE else RunStatus.INTERRUPTED
    return TrainingOutcome(status, result, notes=tuple(notes), epochs_trained=report.trained_epochs)


def _unwritable(store: ResultStore, error: BaseException, cause: BaseException | None = None) -> ResultsUnwritable:
    """The one message of a results root that takes no more writes."""
    what = f" (while recording {type(cause).__name__}: {cause})" if cause is not None else ""
    return ResultsUnwritable(
        f"cannot write under the results root {store.root}: {error}{what}. Stopped the suite here; finished "
        "epochs are checkpointed. Free space (or make it writable) and run the same command again to resume"
    )


def repair_before_training(
    store: ResultStore, run_id: str, *, device: str | None = None, data_root: str | None = None
) -> list[str]:
    """Holding the run's lock: set aside a damaged result.json, rewrite a damaged metrics.jsonl, rebuild a
    damaged model.pt of the run's teacher run; what was done (one line each)."""
    store.remove_stale_temporaries(run_id)
    notes = []
    metrics = store.repair_metrics(run_id)
    if metrics:
        notes.append(metrics)
    problem = store.result_problem(run_id)
    if problem:
        store.set_aside_result(run_id)
        epochs = sum(1 for m in store.checkpoint_metrics(run_id) or [] if m.get("phase", "main") == "main")
        planned = _planned_epochs(store, run_id)
        how = (
            "rebuilt from the checkpoint and metrics, which hold every epoch"
            if planned is not None and epochs >= planned
            else f"retrained from epoch {epochs + 1} (the checkpoint holds {epochs})"
            if epochs
            else "retrained (no checkpoint)"
        )
        notes.append(f"{problem}; set aside as result.damaged.json and {how}")
    teacher_note = _rebuild_teacher_model(store, run_id, device=device, data_root=data_root)
    if teacher_note:
        notes.append(teacher_note)
    return notes


def _planned_epochs(store: ResultStore, run_id: str) -> int | None:
    """Main-stage epochs of the run's schedule; None without a readable spec."""
    import yaml

    try:
        spec = yaml.safe_load((store.run_dir(run_id) / "spec.yaml").read_text())
        return int(spec["schedule"]["epochs"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None


def _rebuild_teacher_model(store: ResultStore, run_id: str, *, device: str | None, data_root: str | None) -> str | None:
    """When the run's teacher is a run of the suite whose model.pt does not load, rebuild that file (and its
    result) from the teacher's checkpoint, the source of truth, under the teacher's lock (or retrain the
    teacher, from the epoch its checkpoint holds or from the first without one that loads); what was done."""
    import yaml

    try:
        teacher_run = yaml.safe_load((store.run_dir(run_id) / "spec.yaml").read_text()).get("teacher_run")
    except (OSError, AttributeError, yaml.YAMLError):
        return None
    if not teacher_run:
        return None
    model = store.run_dir(teacher_run) / "model.pt"
    if not model.exists() or store.result(teacher_run) is None or _loads(model):
        return None
    from kdbench.train import CallReport, train_run

    report = CallReport()
    with store.lock(teacher_run):
        if _loads(model):  # rebuilt by another process between our look and the lock
            return None
        # a copy kept aside, the file left in place: a rebuild that fails (its teacher file moved) leaves the
        # finished teacher as it was, not without its model.pt
        shutil.copy2(model, model.with_name("model.damaged.pt"))
        train_run(store.run_dir(teacher_run), device=device, data_root=data_root, report=report)
    if report.trained_epochs == 0:
        how = "rebuilt from its checkpoint, which holds every epoch"
    elif report.resumed_epochs == 0:
        how = "retrained from scratch: no checkpoint of it loads"
    else:
        held = report.resumed_epochs
        how = f"retrained from epoch {held + 1}: its checkpoint held {count_of(held, 'epoch')}"
    return f"teacher run {teacher_run}: {model} did not load; {how} (old file: model.damaged.pt)"


def _loads(path: Path) -> bool:
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises several kinds for a damaged file
        return False
    return True


def failure_is_gone(spec: RunSpec, store: ResultStore) -> bool:
    """A run that failed loading its teacher whose teacher now loads: its teacher file passes the check
    ``kdbench run`` makes before training (``kdbench.preflight``), or its teacher run is done. Such a run
    is trained again without ``--retry-failed`` (and the summary says so)."""
    failure = store.failure(spec.run_id) or {}
    if failure.get("stage") != "teacher" or spec.teacher is None:
        return False
    if spec.teacher_run is not None:
        return store.status(spec.teacher_run) == RunStatus.DONE
    if spec.teacher_checkpoint is None:
        return False
    from kdbench.preflight import teacher_file_problems
    from kdbench.validation import Collector

    problems = Collector()
    teacher_file_problems([spec], problems)
    return not problems.problems


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
