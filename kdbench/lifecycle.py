"""A run's life in one vocabulary: what state it is in, why, and which job (if any) holds it.

Every part that says where a run stands uses ``RunStatus``: the result store (from the run's files),
the executors (local: files and locks; SLURM: files, ``slurm.json`` and squeue/sacct), ``kdbench
status`` / ``run`` / ``cancel`` and the reports (``results_frame``'s status column). The values are the
words users see, so a status prints as itself (``f"{RunStatus.DONE}"`` is ``done``) and compares equal
to its word (``RunStatus.DONE == "done"``).

Imports nothing heavy: the CLI reads it before deciding what else to load.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kdbench.suite import RunSpec


class RunStatus(str, Enum):
    """Where a run stands; declared in the order listings show them."""

    #: result.json exists (its presence is what "done" means)
    DONE = "done"
    #: a process holds the run's lock (here, elsewhere, or in a SLURM job)
    RUNNING = "running"
    #: SLURM requeued its job (preemption, time limit): it resumes from its last epoch
    REQUEUED = "requeued"
    #: nothing trained yet: not started, or its job waits in SLURM's queue
    PENDING = "pending"
    #: stopped with finished epochs checkpointed and nobody training it: running the suite again resumes it
    INTERRUPTED = "interrupted"
    #: its teacher run failed (or is blocked itself): it cannot start until the teacher is retried
    BLOCKED = "blocked"
    #: failed.json exists (a non-finite loss, a missing teacher file, an unexpected error), or its job failed
    FAILED = "failed"
    #: its SLURM job was cancelled; submitting again resumes it
    CANCELLED = "cancelled"
    #: its SLURM job is unknown to SLURM and the run never finished
    LOST = "lost"
    #: SLURM did not answer
    UNKNOWN = "unknown"
    #: the method does not apply to the pair (a report cell shows NA); never trained
    NOT_APPLICABLE = "na"

    def __str__(self) -> str:
        return self.value

    __hash__ = str.__hash__


#: a teacher in one of these blocks its students
BLOCKING = frozenset({RunStatus.FAILED, RunStatus.BLOCKED})


@dataclass(frozen=True)
class RunState:
    """A run's status and why, as an executor sees it.

    ``detail`` says why (the failure's reason, the SLURM state and reason, the teacher that blocks it,
    the epochs done); ``job_id`` is the executor's handle on it (a SLURM job or array task), if any;
    ``job_active``: that job is still queued or running, so it can be waited on or cancelled (a run
    trained by a local process has no job). ``log_path`` and ``log_tail``: the error log of a failed job.
    """

    status: RunStatus
    job_id: str | None = None
    detail: str = ""
    log_path: str | None = None
    log_tail: str | None = None
    job_active: bool = False


def count_statuses(statuses: Iterable[RunStatus]) -> str:
    """``3 done, 1 running, 2 blocked``: how many runs are in each status, in the declared order."""
    counts: dict[RunStatus, int] = {}
    for status in statuses:
        counts[RunStatus(status)] = counts.get(RunStatus(status), 0) + 1
    return ", ".join(f"{counts[status]} {status}" for status in RunStatus if status in counts)


def describe_state(state: RunState) -> str:
    """One line: ``failed (job 12_3): job FAILED``, for status listings."""
    job = f" (job {state.job_id})" if state.job_id else ""
    return f"{state.status}{job}" + (f": {state.detail}" if state.detail else "")


def describe_run(spec: RunSpec) -> str:
    """What a run is, in a few words: ``KD resnet56->resnet20 seed 1`` or ``teacher resnet56 seed 0``."""
    if spec.kind == "teacher":
        return f"teacher {spec.student} seed {spec.seed}"
    sweep = "".join(f" {k.split('.')[-1]}={v}" for k, v in spec.sweep.items())
    return f"{spec.method}{sweep} {spec.pair_teacher or spec.teacher}->{spec.student} seed {spec.seed}"


def blocked_reason(teacher_run: str, teacher: RunState) -> str:
    """Why a student of ``teacher`` cannot start: ``teacher run 3f2a... failed: non-finite loss ...``."""
    return f"teacher run {teacher_run} {teacher.status}" + (f": {teacher.detail}" if teacher.detail else "")


def with_blocked_students(runs: Sequence[RunSpec], states: Mapping[str, RunState]) -> dict[str, RunState]:
    """``states`` with every student of a failed (or blocked) teacher marked blocked, naming the teacher.

    A student that is done, failed itself or being trained keeps its own state. ``runs`` in plan order
    (teachers first), so a chain of teachers blocks all the way down.
    """
    marked = dict(states)
    for spec in runs:
        own = marked.get(spec.run_id)
        teacher = marked.get(spec.teacher_run) if spec.teacher_run else None
        if own is None or teacher is None or teacher.status not in BLOCKING:
            continue
        if own.status in (RunStatus.DONE, RunStatus.FAILED, RunStatus.RUNNING, RunStatus.NOT_APPLICABLE):
            continue
        # not job_active: a job of it still waiting on the failed teacher will never start
        marked[spec.run_id] = RunState(RunStatus.BLOCKED, own.job_id, blocked_reason(spec.teacher_run, teacher))
    return marked


def distinct_applicable(runs: Sequence[RunSpec]) -> list[RunSpec]:
    """One entry per run id (a Vanilla student serves several pairs) without NA runs, plan order kept."""
    seen: dict[str, RunSpec] = {}
    for spec in runs:
        if not spec.not_applicable:
            seen.setdefault(spec.run_id, spec)
    return list(seen.values())
