"""A submitted run's state: its files first (result.json, failed.json, its lock), then its job as squeue and
sacct report it, then its teacher's state (a student of a failed teacher is blocked).

No submitit here: ``kdbench status`` needs only the SLURM commands.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from kdbench.executors.base import Log
from kdbench.executors.slurm.commands import JobInfo, SlurmError, query_jobs
from kdbench.executors.slurm.records import read_record
from kdbench.lifecycle import RunState, RunStatus, count_statuses, distinct_applicable, with_blocked_students
from kdbench.results.store import ResultStore
from kdbench.suite import RunSpec

# SLURM job states (squeue and sacct spell them the same way), grouped by what they mean for a run.
ACTIVE_STATES = {
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
    "RESV_DEL_HOLD",
    "SPECIAL_EXIT",
    "PREEMPTED",
}
REQUEUE_STATES = {"REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "PREEMPTED"}
FAILED_STATES = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}
CANCELLED_STATES = {"CANCELLED", "REVOKED"}


def is_queued(state: RunState) -> bool:
    """A job of SLURM's will still train the run, or another process trains it now: never submit it again."""
    return state.job_active or state.status == RunStatus.RUNNING


def log_tail(path: str | None, lines: int = 15) -> str | None:
    """The last ``lines`` lines of a job's log (its last 16 KiB at most), or None without one."""
    if not path or not Path(path).is_file():
        return None
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 16384))
        text = handle.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _epochs_done(store: ResultStore, run_id: str) -> str:
    count = store.epochs_done(run_id)
    return f"{count} epoch(s) done" if count else ""


def state_from_job(store: ResultStore, spec: RunSpec, record: dict | None, job: JobInfo | None) -> RunState:
    """The run's state from its files and its job alone (teachers are considered afterwards).

    The files decide first (a result means done, whatever SLURM says); a run never submitted reads as
    the store says (pending, interrupted). Then the job: queued (pending; requeued after a preemption;
    blocked when its dependency can never be met), failed, cancelled, lost (SLURM does not know it) or
    interrupted (it ended without a result: submitting again resumes it).
    """
    run_id = spec.run_id
    job_id = record.get("job_id") if record else None
    stored = store.status(run_id)
    if stored == RunStatus.DONE:
        return RunState(RunStatus.DONE, job_id)
    active = job is not None and job.in_queue and job.state in ACTIVE_STATES
    if stored == RunStatus.RUNNING:
        return RunState(RunStatus.RUNNING, job_id, _epochs_done(store, run_id) or "starting", job_active=active)
    if stored == RunStatus.FAILED:
        log = record.get("stderr") if record else None
        return RunState(RunStatus.FAILED, job_id, store.state(run_id).detail, log, log_tail(log))
    if record is None:
        return RunState(stored, None, _epochs_done(store, run_id))
    if job is None:
        return RunState(RunStatus.LOST, job_id, f"job {job_id} is unknown to SLURM and the run has no result")
    slurm = job.state + (f" ({job.reason})" if job.reason and job.reason != "None" else "")
    requeues = f"requeued {job.restarts}x" if job.restarts else ""
    if active:
        details = ", ".join(part for part in (slurm, requeues, _epochs_done(store, run_id)) if part)
        if job.state == "PENDING" and job.reason == "DependencyNeverSatisfied":
            return RunState(RunStatus.BLOCKED, job_id, "its teacher's job did not succeed", job_active=True)
        if job.state in REQUEUE_STATES or (job.state == "PENDING" and job.restarts):
            return RunState(RunStatus.REQUEUED, job_id, details, job_active=True)
        status = RunStatus.PENDING if job.state == "PENDING" else RunStatus.RUNNING
        return RunState(status, job_id, details, job_active=True)
    if job.state in FAILED_STATES:
        log = record.get("stderr")
        return RunState(RunStatus.FAILED, job_id, f"job {job.state}", log, log_tail(log))
    if job.state in CANCELLED_STATES:
        return RunState(RunStatus.CANCELLED, job_id, slurm)
    # Ended without a result (COMPLETED early, PREEMPTED and not requeued): submitting again resumes it.
    return RunState(RunStatus.INTERRUPTED, job_id, f"job ended ({slurm}) without a result")


def suite_states(store: ResultStore, runs: Sequence[RunSpec], *, strict: bool) -> dict[str, RunState]:
    """The state of each of ``runs`` (distinct, applicable). ``strict``: SlurmError when SLURM does not
    answer (submitting and cancelling need the truth); otherwise those runs are ``unknown``."""
    records = {spec.run_id: read_record(store, spec.run_id) for spec in runs}
    # Jobs of finished runs need no question to SLURM.
    finished = (RunStatus.DONE, RunStatus.FAILED)
    asked = {run_id: r["job_id"] for run_id, r in records.items() if r and store.status(run_id) not in finished}
    unanswered: str | None = None
    try:
        jobs = query_jobs(list(asked.values()))
    except SlurmError as error:
        if strict:
            raise
        jobs, unanswered = {}, f"SLURM did not answer: {error}"
    states: dict[str, RunState] = {}
    for spec in runs:
        record = records[spec.run_id]
        if unanswered and spec.run_id in asked:
            states[spec.run_id] = RunState(RunStatus.UNKNOWN, record["job_id"], unanswered)
            continue
        states[spec.run_id] = state_from_job(store, spec, record, jobs.get(record["job_id"]) if record else None)
    return with_blocked_students(runs, states)


def slurm_states(store: ResultStore, runs: Sequence[RunSpec]) -> dict[str, RunState]:
    """The state of every applicable run (one entry per run id), from its files, squeue and sacct."""
    return suite_states(store, distinct_applicable(runs), strict=False)


def wait_for_suite(
    store: ResultStore,
    runs: Sequence[RunSpec],
    *,
    timeout_s: float | None = None,
    poll_s: float = 10.0,
    log: Log = print,
) -> dict[str, RunState]:
    """Poll until no run is queued, requeued or running (or ``timeout_s`` passes); the last states.

    Logs a one-line count of states whenever it changes (for ``kdbench run --executor slurm --wait``)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = ""
    while True:
        states = slurm_states(store, runs)
        line = count_statuses(state.status for state in states.values())
        if line != last:
            log(f"  {time.strftime('%H:%M:%S')}  {line}")
            last = line
        if not any(is_queued(state) or state.status == RunStatus.UNKNOWN for state in states.values()):
            return states
        if deadline is not None and time.monotonic() > deadline:
            return states
        time.sleep(poll_s)
