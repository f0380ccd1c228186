"""Run a suite on a SLURM cluster through submitit: job arrays per dependency level, requeue on preemption.

``submit_suite`` submits every run that is neither done nor already queued: the teachers as one job
array, then the students in one array per teacher, each held with ``afterok`` on its own teacher's
array task (students of teachers that are done, or that come from checkpoint files, go without a
dependency). A job receives a run directory, never a pickled model: ``TrainJob(run_dir)`` takes the
run's lock and calls ``train_run``, which resumes from the run's last epoch checkpoint. When SLURM
preempts the job or its time limit nears, submitit calls ``TrainJob.checkpoint`` and requeues it; the
requeued job resumes with the same final result as an uninterrupted run.

With ``runs_per_job: N > 1`` in the profile, the runs of one submission (those sharing one dependency)
go in packs of up to N, one array task per pack: ``PackedTrainJob(run_dirs)`` trains them at once, one
process per run, sharing the job's GPU(s); the job asks for N times ``cpus_per_run`` and ``mem_gb``. It
waits for all its runs and fails if any did, so students held on it (``afterok``) start only when every
teacher of the pack is done. Students of the pack's other teachers are then cancelled by SLURM with the
rest; submitting again sends them without a dependency, since their teachers are done.

Each submitted run gets ``slurm.json`` in its run directory (job id, array index, dependency, submit
time, log paths, and the earlier submissions). Submission holds a lock on a file under the results
root, so two shells submitting the same suite at once cannot both submit a run: the second waits,
then finds the first one's jobs queued. ``slurm_states`` reads squeue and sacct for ``kdbench status``.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import shutil
import signal
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import submitit

from kdbench.executors.profile import Profile, load_profile
from kdbench.results.store import DONE, FAILED, RUNNING, ResultStore, atomic_write_json
from kdbench.suite import RunSpec

__all__ = [
    "PackFailed",
    "PackedTrainJob",
    "Profile",
    "RunState",
    "SlurmError",
    "SubmitSummary",
    "TrainJob",
    "cancel_runs",
    "load_profile",
    "pack_runs",
    "query_jobs",
    "slurm_states",
    "submit_suite",
    "wait_for_suite",
]

RECORD = "slurm.json"
#: SLURM's MaxArraySize defaults to 1001: larger levels go in several arrays
MAX_ARRAY_SIZE = 1000
COMMAND_TIMEOUT_S = 60

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
FAILED_STATES = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}
CANCELLED_STATES = {"CANCELLED", "REVOKED"}

# What a run is, as kdbench status shows it.
PENDING, REQUEUED, CANCELLED, BLOCKED = "pending", "requeued", "cancelled", "blocked"
NOT_SUBMITTED, INTERRUPTED, LOST, UNKNOWN = "not-submitted", "interrupted", "lost", "unknown"
#: states whose job will still train the run: never submit it again
QUEUED = {PENDING, REQUEUED, RUNNING}


class SlurmError(RuntimeError):
    """The cluster refused or could not answer (no sbatch here, a bad partition, squeue failing)."""


# --- the job --------------------------------------------------------------------------------------------


class TrainJob(submitit.helpers.Checkpointable):
    """One run, trained inside a SLURM job. Pickled by submitit: it holds paths and options only."""

    def __init__(self, run_dir: str, device: str | None = None, data_root: str | None = None):
        self.run_dir = str(run_dir)
        self.device = device
        self.data_root = data_root

    def __call__(self) -> dict:
        from kdbench.train import RunFailed, train_run

        run_dir = Path(self.run_dir)
        store = ResultStore(run_dir.parent.parent)
        _use_allocated_cpus()
        with store.lock(run_dir.name):
            finished = store.result(run_dir.name)
            if finished is not None:
                return finished
            try:
                return train_run(run_dir, device=self.device, data_root=self.data_root, progress=False)
            except RunFailed:
                raise  # train_run has written failed.json
            except Exception as error:
                # Record why, as the local executor does, so `kdbench status` can say it; the job still fails.
                atomic_write_json(
                    run_dir / "failed.json",
                    {
                        "reason": f"{type(error).__name__}: {error}",
                        "type": type(error).__name__,
                        "traceback": traceback.format_exc(),
                        "time": _now(),
                    },
                )
                raise

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called on preemption or near the time limit: every finished epoch is already in checkpoint.pt,
        so requeueing the same run resumes it exactly."""
        return submitit.helpers.DelayedSubmission(TrainJob(self.run_dir, self.device, self.data_root))


def _use_allocated_cpus() -> None:
    # Without cgroups a job sees every core of the node; torch would start a thread per core in every
    # job and the jobs sharing a node would slow each other down many times over.
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():
        import torch

        torch.set_num_threads(int(cpus))


class PackFailed(RuntimeError):
    """Some runs of a packed job did not finish; the job fails so that students held on it do not start."""


class PackedTrainJob(submitit.helpers.Checkpointable):
    """Several runs trained at once inside one SLURM job (``runs_per_job`` > 1), one process per run.

    The processes share the job's GPU(s); each gets an equal part of the job's CPUs as torch threads
    (CPU runs still train on ``KDBENCH_CPU_THREADS``, see ``kdbench.train.cpu_threads``). The job waits
    for every run, then raises ``PackFailed`` naming the runs that failed, if any: a failed run has its
    failed.json as under ``TrainJob``, and the job's failure keeps ``afterok`` students from starting.
    Pickled by submitit: it holds paths and options only.
    """

    def __init__(self, run_dirs: Sequence[str], device: str | None = None, data_root: str | None = None):
        self.run_dirs = [str(run_dir) for run_dir in run_dirs]
        self.device = device
        self.data_root = data_root

    def __call__(self) -> dict[str, dict]:
        """Train every run of the pack; run id -> result."""
        from kdbench.executors.local import die_with_parent

        threads = _cpus_per_process(len(self.run_dirs))
        outcomes: dict[str, tuple[str, str | dict]] = {}
        # spawn: fork and CUDA do not mix, and each run needs its own torch state (threads, seeds, device)
        context = multiprocessing.get_context("spawn")
        others = set(multiprocessing.active_children())
        # SLURM sends its preemption / time-limit warning (and, on preemption, SIGTERM) to every process of the
        # job. Only this one may act on them (submitit checkpoints the pack and requeues the job; it ignores
        # SIGTERM): the processes started here (the runs, multiprocessing's resource tracker) inherit both
        # signals blocked, so neither can kill a run; this process stops them itself (below).
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {_preemption_signal(), signal.SIGTERM})
        pools: list[ProcessPoolExecutor] = []
        futures = {}
        try:
            try:
                # A pool per run: a run whose process dies (out of memory) does not break the others' pool.
                for index, run_dir in enumerate(map(Path, self.run_dirs)):
                    pools.append(
                        ProcessPoolExecutor(
                            max_workers=1, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)
                        )
                    )
                    device = _member_device(self.device, index)
                    job = (str(run_dir.parent.parent), run_dir.name, device, self.data_root, threads)
                    futures[pools[-1].submit(_train_pack_member, *job)] = run_dir.name
            finally:
                # a signal that came meanwhile is delivered here, inside the try that stops the runs
                signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
            for future in as_completed(futures):
                run_id = futures[future]
                try:
                    outcomes[run_id] = future.result()
                except Exception as error:  # its process died (out of memory, killed): no failed.json to read
                    outcomes[run_id] = ("failed", f"its process died: {type(error).__name__}: {error}")
                _log_outcome(run_id, *outcomes[run_id])
        except BaseException:
            # Preempted (submitit's signal handler has requeued the job and exits) or interrupted: stop the
            # runs now rather than waiting for them; every finished epoch is already checkpointed. SIGKILL:
            # they do not take SIGTERM.
            for process in set(multiprocessing.active_children()) - others:
                process.kill()
            raise
        finally:
            for pool in pools:
                pool.shutdown(wait=True, cancel_futures=True)
        unfinished = {run_id: outcome for run_id, outcome in outcomes.items() if outcome[0] != "done"}
        if unfinished:
            reasons = "; ".join(f"{run_id} {state}: {why}" for run_id, (state, why) in unfinished.items())
            raise PackFailed(
                f"{len(unfinished)} of {len(self.run_dirs)} runs of this job did not finish "
                f"({', '.join(unfinished)}): {reasons}"
            )
        return {run_id: result for run_id, (_, result) in outcomes.items()}

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called on preemption or near the time limit: the same pack again. On requeue, runs that are done
        return their result.json at once and the others resume from their last epoch."""
        return submitit.helpers.DelayedSubmission(PackedTrainJob(self.run_dirs, self.device, self.data_root))


def _member_device(device: str | None, index: int) -> str | None:
    """The device of a pack's ``index``-th run: with several GPUs in the job (``gpus_per_run`` > 1), the
    runs take turns over them; an explicit ``cuda:N`` or ``cpu`` is kept."""
    visible = [gpu for gpu in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if gpu.strip()]
    if device in (None, "auto", "cuda") and len(visible) > 1:
        return f"cuda:{index % len(visible)}"
    return device


def _cpus_per_process(pack_size: int) -> int | None:
    """Each run's equal part of the job's CPUs (``cpus_per_run``; see ``_use_allocated_cpus`` for why)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    return max(1, int(cpus) // pack_size) if cpus and cpus.isdigit() else None


def _train_pack_member(
    store_root: str, run_id: str, device: str | None, data_root: str | None, threads: int | None
) -> tuple[str, str | dict]:
    """One run of a pack, in its own process: ("done", result) at once if it is done, else ``train_locked``."""
    # The job's own process handles SLURM's preemption warning and SIGTERM (see PackedTrainJob); here they
    # would kill the run.
    for handled_by_the_job in (_preemption_signal(), signal.SIGTERM):
        signal.signal(handled_by_the_job, signal.SIG_IGN)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    finished = ResultStore(store_root).result(run_id)
    if finished is not None:  # a requeued pack: this run finished before the preemption
        return "done", finished
    from kdbench.executors.local import train_locked

    return train_locked(store_root, run_id, device, data_root, progress=False, stop_after_epochs=None)


def _preemption_signal() -> signal.Signals:
    return getattr(signal, f"SIG{submitit.JobEnvironment.USR_SIG}", signal.SIGUSR2)


def _log_outcome(run_id: str, state: str, payload: str | dict) -> None:
    if state == "done" and isinstance(payload, dict):
        line = f"done {run_id}: top-1 {payload['top1_last']:.2f} (best {payload['top1_best']:.2f})"
    else:
        line = f"{state} {run_id}: {payload}"
    print(f"kdbench pack: {line}", flush=True)  # the job's log says which run ended how


# --- talking to SLURM -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobInfo:
    """What SLURM says about one job (or array task): its state word, pending reason and requeue count."""

    job_id: str
    state: str
    reason: str = ""
    restarts: int = 0
    #: held by the controller (squeue); False: known from accounting only, so it has ended
    in_queue: bool = True


def _slurm_command(args: list[str]) -> subprocess.CompletedProcess:
    if shutil.which(args[0]) is None:
        raise SlurmError(
            f"'{args[0]}' not found: run this on a SLURM login node (for the local test cluster: "
            f'eval "$(slurm/local-cluster.sh start)")'
        )
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        command = " ".join(args[:3])
        raise SlurmError(f"'{command} ...' did not answer in {COMMAND_TIMEOUT_S} s: is slurmctld up?") from None


def query_jobs(job_ids: Sequence[str]) -> dict[str, JobInfo]:
    """States of jobs and array tasks ("12", "13_4"): squeue for what the controller holds, then sacct for
    jobs that have left it. Ids neither knows are absent from the answer."""
    wanted = sorted(set(job_ids))
    if not wanted:
        return {}
    found: dict[str, JobInfo] = {}
    array_ids = sorted({job_id.split("_")[0] for job_id in wanted})
    queue = _slurm_command(
        [
            "squeue",
            "--noheader",
            "--array",
            "--jobs",
            ",".join(array_ids),
            "--Format",
            "JobArrayID:|,State:|,Reason:|,RestartCnt:|",
        ]
    )
    if queue.returncode != 0 and "Invalid job id" not in queue.stderr:
        raise SlurmError(f"squeue failed: {queue.stderr.strip() or queue.stdout.strip()}")
    for line in queue.stdout.splitlines():
        parts = [part.strip() for part in line.split("|")]
        if len(parts) >= 4 and parts[0] in wanted:
            restarts = int(parts[3]) if parts[3].isdigit() else 0
            found[parts[0]] = JobInfo(parts[0], parts[1], parts[2], restarts)
    missing = [job_id for job_id in wanted if job_id not in found]
    if missing and shutil.which("sacct"):
        accounting = _slurm_command(
            [
                "sacct",
                "--noheader",
                "--parsable2",
                "--allocations",
                "--jobs",
                ",".join(missing),
                "--format",
                "JobID,State,Reason",
            ]
        )
        # No accounting on this cluster: jobs that left the queue are simply unknown.
        for line in accounting.stdout.splitlines() if accounting.returncode == 0 else []:
            parts = line.split("|")
            if len(parts) >= 2 and parts[0] in missing:
                state = parts[1].split()[0] if parts[1].split() else "UNKNOWN"
                found[parts[0]] = JobInfo(parts[0], state, parts[2] if len(parts) > 2 else "", in_queue=False)
    return found


def _scancel(job_ids: Sequence[str]) -> None:
    if job_ids:
        done = _slurm_command(["scancel", *job_ids])
        # A job that ended in the meantime is no error: it no longer needs cancelling.
        if done.returncode != 0 and "already completed" not in done.stderr and "Invalid job id" not in done.stderr:
            raise SlurmError(f"scancel failed: {done.stderr.strip()}")


# --- run records ----------------------------------------------------------------------------------------


def read_record(store: ResultStore, run_id: str) -> dict | None:
    """The run's slurm.json: its latest submission, with the earlier ones under "previous"."""
    import json

    try:
        return json.loads((store.run_dir(run_id) / RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _write_record(
    store: ResultStore,
    run_id: str,
    job: submitit.Job,
    dependency: str | None,
    profile: Profile,
    pack: Sequence[str] | None = None,
) -> None:
    """Record the run's new submission; ``pack``: every run its job trains (``runs_per_job`` > 1 only)."""
    previous = read_record(store, run_id)
    history = []
    if previous:
        history = previous.pop("previous", [])
        history.append(previous)
    array_id, _, index = str(job.job_id).partition("_")
    packing = {} if pack is None else {"pack": list(pack), "runs_per_job": profile.runs_per_job}
    atomic_write_json(
        store.run_dir(run_id) / RECORD,
        {
            "job_id": str(job.job_id),
            "array_job_id": array_id,
            "array_index": int(index) if index else None,
            "dependency": dependency,
            "submitted_at": _now(),
            "stdout": str(job.paths.stdout),
            "stderr": str(job.paths.stderr),
            "profile": profile.source,
            "slurm_conf": os.environ.get("SLURM_CONF"),
            **packing,
            "previous": history,
        },
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- states ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunState:
    """A run as ``kdbench status`` shows it under SLURM.

    ``state``: done, pending, running, requeued, failed, cancelled, blocked, not-submitted, interrupted
    (stopped with a checkpoint and no job: submitting again resumes it), lost (its job is unknown to
    SLURM and it never finished) or unknown (SLURM did not answer). ``detail`` says why (the SLURM state
    and reason, the failure, the teacher that blocks it); for failed runs ``log_path`` and ``log_tail``
    point at the job's error log.
    """

    state: str
    job_id: str | None = None
    detail: str = ""
    log_path: str | None = None
    log_tail: str | None = None
    #: the job is in SLURM's queue now (pending, running, requeued): it can be waited on or cancelled
    job_active: bool = False


def _tail(path: str | None, lines: int = 15) -> str | None:
    if not path or not Path(path).is_file():
        return None
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 16384))
        text = handle.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _epochs_done(store: ResultStore, run_id: str) -> str:
    path = store.run_dir(run_id) / "metrics.jsonl"
    count = sum(1 for _ in path.open()) if path.exists() else 0
    return f"{count} epoch(s) done" if count else ""


def _own_state(store: ResultStore, spec: RunSpec, record: dict | None, job: JobInfo | None) -> RunState:
    """The run's state from its files and its job alone (teachers are considered afterwards)."""
    run_id = spec.run_id
    job_id = record.get("job_id") if record else None
    stored = store.status(run_id)
    if stored == DONE:
        return RunState(DONE, job_id)
    active = job is not None and job.in_queue and job.state in ACTIVE_STATES
    if stored == RUNNING:
        return RunState(RUNNING, job_id, _epochs_done(store, run_id) or "starting", job_active=active)
    if stored == FAILED:
        failure = store.failure(run_id) or {}
        log = record.get("stderr") if record else None
        return RunState(FAILED, job_id, failure.get("reason", "failed.json"), log, _tail(log))
    if record is None:
        return RunState(INTERRUPTED if stored == "interrupted" else NOT_SUBMITTED, None, _epochs_done(store, run_id))
    if job is None:
        return RunState(LOST, job_id, f"job {job_id} is unknown to SLURM and the run has no result")
    slurm = job.state + (f" ({job.reason})" if job.reason and job.reason != "None" else "")
    requeues = f"requeued {job.restarts}x" if job.restarts else ""
    if active:
        details = ", ".join(part for part in (slurm, requeues, _epochs_done(store, run_id)) if part)
        if job.state == "PENDING" and job.reason == "DependencyNeverSatisfied":
            return RunState(BLOCKED, job_id, "its teacher's job did not succeed", job_active=True)
        if job.state in {"REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "PREEMPTED"} or (
            job.state == "PENDING" and job.restarts
        ):
            return RunState(REQUEUED, job_id, details, job_active=True)
        return RunState(PENDING if job.state == "PENDING" else RUNNING, job_id, details, job_active=True)
    if job.state in FAILED_STATES:
        log = record.get("stderr")
        return RunState(FAILED, job_id, f"job {job.state}", log, _tail(log))
    if job.state in CANCELLED_STATES:
        return RunState(CANCELLED, job_id, slurm)
    # Ended without a result (COMPLETED early, PREEMPTED and not requeued): submitting again resumes it.
    return RunState(INTERRUPTED, job_id, f"job ended ({slurm}) without a result")


def _states(store: ResultStore, runs: Sequence[RunSpec], strict: bool) -> dict[str, RunState]:
    records = {spec.run_id: read_record(store, spec.run_id) for spec in runs}
    # Jobs of finished runs need no question to SLURM.
    asked = {run_id: r["job_id"] for run_id, r in records.items() if r and store.status(run_id) not in (DONE, FAILED)}
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
            states[spec.run_id] = RunState(UNKNOWN, record["job_id"], unanswered)
            continue
        states[spec.run_id] = _own_state(store, spec, record, jobs.get(record["job_id"]) if record else None)
    for spec in runs:
        teacher = states.get(spec.teacher_run) if spec.teacher_run else None
        own = states[spec.run_id]
        if teacher is not None and teacher.state in (FAILED, BLOCKED) and own.state not in (DONE, FAILED, RUNNING):
            why = f"teacher run {spec.teacher_run} {teacher.state}" + (f": {teacher.detail}" if teacher.detail else "")
            states[spec.run_id] = RunState(BLOCKED, own.job_id, why)
    return states


def slurm_states(store: ResultStore, runs: Sequence[RunSpec]) -> dict[str, RunState]:
    """The state of every applicable run (one entry per run id), from its files, squeue and sacct."""
    return _states(store, _distinct_applicable(runs), strict=False)


#: states that change without anyone submitting again
MOVING = {PENDING, REQUEUED, RUNNING, UNKNOWN}


def wait_for_suite(
    store: ResultStore,
    runs: Sequence[RunSpec],
    *,
    timeout_s: float | None = None,
    poll_s: float = 10.0,
    log: Callable[[str], None] = print,
) -> dict[str, RunState]:
    """Poll until no run is pending, requeued or running (or ``timeout_s`` passes); the last states.

    Logs a one-line count of states whenever it changes (for ``kdbench run --executor slurm --wait``)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = ""
    while True:
        states = slurm_states(store, runs)
        counts: dict[str, int] = {}
        for state in states.values():
            counts[state.state] = counts.get(state.state, 0) + 1
        line = ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))
        if line != last:
            log(f"  {time.strftime('%H:%M:%S')}  {line}")
            last = line
        if not any(state.state in MOVING for state in states.values()):
            return states
        if deadline is not None and time.monotonic() > deadline:
            return states
        time.sleep(poll_s)


def _distinct_applicable(runs: Sequence[RunSpec]) -> list[RunSpec]:
    seen: dict[str, RunSpec] = {}
    for spec in runs:
        if not spec.not_applicable:
            seen.setdefault(spec.run_id, spec)
    return list(seen.values())


# --- submission -----------------------------------------------------------------------------------------


@dataclass
class SubmitSummary:
    """What one ``submit_suite`` did; every dict maps a run id to a job id or a reason."""

    submitted: dict[str, str] = field(default_factory=dict)
    already_done: list[str] = field(default_factory=list)
    already_queued: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    not_applicable: list[str] = field(default_factory=list)
    #: (array job id, number of runs, dependency or None, number of array tasks); an array of one task is a
    #: plain job; with ``runs_per_job`` > 1 a task trains a pack of runs
    arrays: list[tuple[str, int, str | None, int]] = field(default_factory=list)

    def describe(self) -> str:
        """A few lines for the terminal."""
        tasks = sum(array[3] for array in self.arrays)
        packed = tasks != len(self.submitted)
        what = f"{len(self.submitted)} run(s) in {tasks} task(s) of" if packed else f"{len(self.submitted)} runs in"
        lines = [
            f"submitted {what} {len(self.arrays)} job array(s); "
            f"{len(self.already_done)} already done, {len(self.already_queued)} already queued or running, "
            f"{len(self.failed)} failed (not retried), {len(self.blocked)} blocked"
        ]
        for array_id, size, dependency, count in self.arrays:
            name = f"array {array_id}_[0-{count - 1}]" if count > 1 else f"job {array_id}"
            runs = f"{size} run(s)" + (f" in {count} task(s)" if count != size else "")
            lines.append(f"  {name}: {runs}" + (f", held until {dependency}" if dependency else ""))
        for run_id, reason in self.failed.items():
            lines.append(f"  failed   {run_id}: {reason}  (--retry-failed submits it again)")
        for run_id, reason in self.blocked.items():
            lines.append(f"  blocked  {run_id}: {reason}")
        return "\n".join(lines)


@contextlib.contextmanager
def submission_lock(root: Path, wait_s: float = 600.0) -> Iterator[None]:
    """One submitter at a time per results root; a second one waits for the first, then sees its jobs."""
    path = Path(root) / "slurm" / "submit.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SlurmError(
                        f"another kdbench is still submitting to {root} after {wait_s:.0f} s ({path})"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.lockf(handle.fileno(), fcntl.LOCK_UN)


def _executor(
    store: ResultStore, profile: Profile, dependency: str | None, pack_size: int = 1
) -> submitit.SlurmExecutor:
    """An executor for one array; its tasks train up to ``pack_size`` runs each, so they ask for that many
    times ``cpus_per_run`` and ``mem_gb`` (the GPUs are shared by the pack)."""
    executor = submitit.SlurmExecutor(
        folder=store.root.resolve() / "slurm" / "jobs" / "%j", max_num_timeout=profile.max_timeouts
    )
    extra = dict(profile.sbatch)
    if dependency:
        # A student whose teacher failed is cancelled by SLURM instead of pending forever.
        extra.setdefault("kill-on-invalid-dep", "yes")
    parameters: dict[str, Any] = dict(
        job_name=profile.job_name,
        time=profile.time_min,
        nodes=1,
        ntasks_per_node=1,
        cpus_per_task=profile.cpus_per_run * pack_size,
        signal_delay_s=profile.signal_delay_s,
        array_parallelism=profile.array_parallelism,
        additional_parameters=extra,
        setup=list(profile.setup),
        stderr_to_stdout=False,
    )
    optional = dict(
        partition=profile.partition,
        account=profile.account,
        qos=profile.qos,
        constraint=profile.constraint,
        dependency=dependency,
        mem=_megabytes(None if profile.mem_gb is None else profile.mem_gb * pack_size),
        gpus_per_node=profile.gpus_per_run or None,
    )
    parameters.update({key: value for key, value in optional.items() if value is not None})
    executor.update_parameters(**parameters)
    return executor


def _megabytes(gigabytes: float | None) -> str | None:
    return None if gigabytes is None else f"{round(gigabytes * 1024)}M"


def pack_runs(runs: Sequence[RunSpec], runs_per_job: int) -> list[list[RunSpec]]:
    """``runs`` in order, in packs of ``runs_per_job`` (the last one may be smaller): one array task each."""
    return [list(runs[start : start + runs_per_job]) for start in range(0, len(runs), runs_per_job)]


def _submit_arrays(
    store: ResultStore,
    profile: Profile,
    runs: Sequence[RunSpec],
    dependency: str | None,
    device: str | None,
    data_root: str | None,
    summary: SubmitSummary,
) -> dict[str, str]:
    """Submit ``runs`` as job arrays sharing ``dependency``, ``runs_per_job`` runs per array task; record
    each run's job; run id -> job id (the runs of one pack share it)."""
    job_ids: dict[str, str] = {}
    packs = pack_runs(runs, profile.runs_per_job)
    for start in range(0, len(packs), MAX_ARRAY_SIZE):
        chunk = packs[start : start + MAX_ARRAY_SIZE]
        run_dirs = [[str(store.write_spec(spec).resolve()) for spec in pack] for pack in chunk]
        # Every task of an array asks for the same resources: those of its largest pack.
        executor = _executor(store, profile, dependency, pack_size=max(len(pack) for pack in chunk))
        try:
            with executor.batch():
                jobs = [executor.submit(_job_for(dirs, device, data_root)) for dirs in run_dirs]
        except Exception as error:  # sbatch's message is the useful part (bad partition, account, ...)
            count = sum(len(pack) for pack in chunk)
            raise SlurmError(f"sbatch refused {count} run(s) with profile {profile.source}: {error}") from None
        for pack, job in zip(chunk, jobs, strict=True):
            pack_ids = [spec.run_id for spec in pack] if profile.runs_per_job > 1 else None
            for spec in pack:
                _write_record(store, spec.run_id, job, dependency, profile, pack_ids)
                job_ids[spec.run_id] = str(job.job_id)
        summary.arrays.append((str(jobs[0].job_id).split("_")[0], sum(map(len, chunk)), dependency, len(jobs)))
    summary.submitted.update(job_ids)
    return job_ids


def _job_for(run_dirs: list[str], device: str | None, data_root: str | None) -> TrainJob | PackedTrainJob:
    # A pack of one trains in the job's own process, exactly as without packing.
    if len(run_dirs) == 1:
        return TrainJob(run_dirs[0], device, data_root)
    return PackedTrainJob(run_dirs, device, data_root)


def submit_suite(
    runs: Sequence[RunSpec],
    store: ResultStore,
    profile: Profile,
    *,
    retry_failed: bool = False,
    device: str | None = None,
    data_root: str | None = None,
) -> SubmitSummary:
    """Submit every run that is neither done nor queued: teachers first, students after their teacher.

    Idempotent: runs that are done, running, pending or requeued are left alone; failed runs are
    submitted again only with ``retry_failed``; students of a failed teacher are blocked, not submitted.
    """
    summary = SubmitSummary()
    summary.not_applicable = sorted({spec.run_id for spec in runs if spec.not_applicable})
    todo = _distinct_applicable(runs)
    with submission_lock(store.root):
        states = _states(store, todo, strict=True)
        candidates: list[RunSpec] = []
        for spec in todo:
            state = states[spec.run_id]
            if state.state == DONE:
                summary.already_done.append(spec.run_id)
            elif state.state in QUEUED:
                summary.already_queued[spec.run_id] = state.job_id or "(trained outside SLURM)"
            elif state.state == FAILED and not retry_failed:
                summary.failed[spec.run_id] = state.detail
            else:
                candidates.append(spec)

        teachers = [spec for spec in candidates if spec.kind == "teacher"]
        for spec in teachers:
            _prepare_resubmission(store, spec.run_id, states[spec.run_id])
        teacher_jobs = {run_id: state.job_id for run_id, state in states.items() if state.job_active and state.job_id}
        if teachers:
            teacher_jobs.update(_submit_arrays(store, profile, teachers, None, device, data_root, summary))

        groups: dict[str | None, list[RunSpec]] = {}
        for spec in candidates:
            if spec.kind == "teacher":
                continue
            dependency = None
            if spec.teacher_run is not None and _stored_or_planned(store, states, spec.teacher_run) != DONE:
                if spec.teacher_run not in teacher_jobs:
                    summary.blocked[spec.run_id] = _teacher_problem(states, spec.teacher_run)
                    continue
                dependency = f"afterok:{teacher_jobs[spec.teacher_run]}"
            _prepare_resubmission(store, spec.run_id, states[spec.run_id])
            groups.setdefault(dependency, []).append(spec)
        for dependency, students in groups.items():
            _submit_arrays(store, profile, students, dependency, device, data_root, summary)
    return summary


def _prepare_resubmission(store: ResultStore, run_id: str, state: RunState) -> None:
    """Before submitting a run again: keep its old failure aside, drop a job still pending on a dead teacher."""
    if state.state == FAILED:
        store.clear_failure(run_id)
    if state.state == BLOCKED and state.job_active and state.job_id:
        _scancel([state.job_id])


def _stored_or_planned(store: ResultStore, states: dict[str, RunState], run_id: str) -> str:
    return states[run_id].state if run_id in states else store.status(run_id)


def _teacher_problem(states: dict[str, RunState], teacher_run: str) -> str:
    if teacher_run not in states:
        return f"teacher run {teacher_run} is not done and not part of this submission"
    teacher = states[teacher_run]
    why = f"teacher run {teacher_run} {teacher.state}" + (f": {teacher.detail}" if teacher.detail else "")
    if teacher.state == FAILED:
        why += " (--retry-failed submits both again)"
    elif teacher.state == RUNNING:
        why += " outside SLURM; submit again once it is done"
    return why


# --- cancelling -----------------------------------------------------------------------------------------


def cancel_runs(store: ResultStore, runs: Sequence[RunSpec], log: Callable[[str], None] = print) -> dict[str, str]:
    """scancel the queued or running jobs of ``runs``; run id -> cancelled job id.

    Students waiting (afterok) on a cancelled teacher are then cancelled by SLURM too. A job that trains
    a pack of runs (``runs_per_job`` > 1) is cancelled whole: its other unfinished runs stop with it, and
    ``log`` names them (submitting again resumes them all)."""
    todo = _distinct_applicable(runs)
    with submission_lock(store.root):
        states = _states(store, todo, strict=True)
        cancelled = {run_id: state.job_id for run_id, state in states.items() if state.job_active and state.job_id}
        for job_id, others in _pack_mates(store, cancelled).items():
            log(f"  job {job_id} trains a pack of runs (runs_per_job): cancelling it also stops {', '.join(others)}")
        _scancel(sorted(set(cancelled.values())))
    return cancelled


def _pack_mates(store: ResultStore, cancelled: dict[str, str]) -> dict[str, list[str]]:
    """Job id -> the unfinished runs it also trains that are not among ``cancelled`` (from their records)."""
    mates: dict[str, list[str]] = {}
    for run_id, job_id in cancelled.items():
        record = read_record(store, run_id) or {}
        if record.get("job_id") != job_id:
            continue
        for other in record.get("pack", []):
            unfinished = store.status(other) not in (DONE, FAILED)
            if other not in cancelled and unfinished and other not in mates.get(job_id, []):
                mates.setdefault(job_id, []).append(other)
    return mates


def describe_state(state: RunState) -> str:
    """One line: "failed (job 12_3): job FAILED", for status listings."""
    job = f" (job {state.job_id})" if state.job_id else ""
    return f"{state.state}{job}" + (f": {state.detail}" if state.detail else "")
