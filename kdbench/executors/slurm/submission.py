"""Submitting a suite to SLURM through submitit, and cancelling its jobs.

``submit_suite`` submits every run that is neither done nor already queued: the teachers as one job
array, then the students in one array per teacher, each held with ``afterok`` on its own teacher's
array task (students of teachers that are done, or that come from checkpoint files, go without a
dependency); students level by level of dependency depth, so a chain's link (TAKD) is held on the
link before it. With ``runs_per_job: N > 1`` in the profile, the runs of one submission (those sharing one
dependency) go in packs of up to N, one array task per pack (``PackedTrainJob``); the task asks for N
times ``cpus_per_run`` and ``mem_gb``. A pack fails if any of its runs failed, so students held on it
start only when every teacher of the pack is done; students of the pack's other teachers are then
cancelled by SLURM with the rest, and submitting again sends them without a dependency.

Submission (and cancelling) holds a lock on a file under the results root, so two shells submitting
the same suite at once cannot both submit a run: the second waits, then finds the first one's jobs
queued.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from kdbench.executors.base import Log
from kdbench.executors.profile import Profile
from kdbench.executors.slurm.commands import SlurmError, scancel
from kdbench.executors.slurm.jobs import PackedTrainJob, TrainJob
from kdbench.executors.slurm.records import read_record, write_record
from kdbench.executors.slurm.states import is_queued, suite_states
from kdbench.executors.training import failure_is_gone
from kdbench.lifecycle import RunState, RunStatus, blocked_reason, distinct_applicable
from kdbench.results.store import ResultStore
from kdbench.suite import RunSpec

#: SLURM's MaxArraySize defaults to 1001: larger levels go in several arrays
MAX_ARRAY_SIZE = 1000


@dataclass
class SubmitSummary:
    """What one ``submit_suite`` did; every dict maps a run id to a job id or a reason."""

    submitted: dict[str, str] = field(default_factory=dict)
    already_done: list[str] = field(default_factory=list)
    already_queued: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    not_applicable: list[str] = field(default_factory=list)
    #: failed earlier loading a teacher that now loads (``failure_is_gone``): submitted again
    retried: list[str] = field(default_factory=list)
    #: (array job id, number of runs, dependency or None, number of array tasks); an array of one task is a
    #: plain job; with ``runs_per_job`` > 1 a task trains a pack of runs
    arrays: list[tuple[str, int, str | None, int]] = field(default_factory=list)
    #: the jobs train after ``submit_suite`` returns (the Submission protocol): wait for them with ``--wait``
    finished: bool = False

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
            lines.append(f"  {RunStatus.FAILED:<8} {run_id}: {reason}  (--retry-failed submits it again)")
        for run_id, reason in self.blocked.items():
            lines.append(f"  {RunStatus.BLOCKED:<8} {run_id}: {reason}")
        if self.retried:
            lines.append(
                f"  {len(self.retried)} run(s) that had failed loading their teacher were submitted again: "
                "the teacher file now passes its check"
            )
        return "\n".join(lines)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.blocked else 0


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


def _submission_files(store: ResultStore) -> set[Path]:
    """The files submitit writes before sbatch answers (each job's pickle, the batch script), in the jobs
    folder's top level; it moves them into the job's own folder only once sbatch gave a job id."""
    folder = store.root.resolve() / "slurm" / "jobs"
    if not folder.is_dir():
        return set()
    return {path for pattern in ("*.pkl", ".submission_file_*.sh") for path in folder.glob(pattern)}


def array_executor(
    store: ResultStore, profile: Profile, dependency: str | None, pack_size: int = 1
) -> submitit.SlurmExecutor:
    """A submitit executor for one array; its tasks train up to ``pack_size`` runs each, so they ask for that
    many times ``cpus_per_run`` and ``mem_gb`` (the GPUs are shared by the pack)."""
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


def job_for(run_dirs: list[str], device: str | None, data_root: str | None) -> TrainJob | PackedTrainJob:
    """The job of one array task; a pack of one trains in the job's own process, exactly as without packing."""
    if len(run_dirs) == 1:
        return TrainJob(run_dirs[0], device, data_root)
    return PackedTrainJob(run_dirs, device, data_root)


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
        # absolute, not resolved: a run found under its older id is reached through its runs/<id> link
        run_dirs = [[str(store.write_spec(spec).absolute()) for spec in pack] for pack in chunk]
        # Every task of an array asks for the same resources: those of its largest pack.
        executor = array_executor(store, profile, dependency, pack_size=max(len(pack) for pack in chunk))
        before = _submission_files(store)
        try:
            with executor.batch():
                jobs = [executor.submit(job_for(dirs, device, data_root)) for dirs in run_dirs]
        except Exception as error:  # sbatch's message is the useful part (bad partition, account, ...)
            for leftover in _submission_files(store) - before:  # the pickles of jobs that never existed
                leftover.unlink(missing_ok=True)
            count = sum(len(pack) for pack in chunk)
            raise SlurmError(f"sbatch refused {count} run(s) with profile {profile.source}: {error}") from None
        for pack, job in zip(chunk, jobs, strict=True):
            pack_ids = [spec.run_id for spec in pack] if profile.runs_per_job > 1 else None
            for spec in pack:
                write_record(store, spec.run_id, job, dependency, profile, pack_ids)
                job_ids[spec.run_id] = str(job.job_id)
        summary.arrays.append((str(jobs[0].job_id).split("_")[0], sum(map(len, chunk)), dependency, len(jobs)))
    summary.submitted.update(job_ids)
    return job_ids


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
    todo = distinct_applicable(runs)
    with submission_lock(store.root):
        states = suite_states(store, todo, strict=True)
        candidates: list[RunSpec] = []
        for spec in todo:
            state = states[spec.run_id]
            if state.status == RunStatus.DONE:
                summary.already_done.append(spec.run_id)
            elif is_queued(state):
                summary.already_queued[spec.run_id] = state.job_id or "(trained outside SLURM)"
            elif state.status == RunStatus.FAILED and not retry_failed and not failure_is_gone(spec, store):
                summary.failed[spec.run_id] = state.detail
            else:
                if state.status == RunStatus.FAILED and not retry_failed:
                    summary.retried.append(spec.run_id)
                candidates.append(spec)

        teachers = [spec for spec in candidates if spec.kind == "teacher"]
        for spec in teachers:
            _prepare_resubmission(store, spec.run_id, states[spec.run_id])
        teacher_jobs = {run_id: state.job_id for run_id, state in states.items() if state.job_active and state.job_id}
        if teachers:
            teacher_jobs.update(_submit_arrays(store, profile, teachers, None, device, data_root, summary))

        # students level by level (a chain's link teaches the next: its depth is its teacher's + 1)
        for level in dependency_levels([spec for spec in candidates if spec.kind != "teacher"]):
            groups: dict[str | None, list[RunSpec]] = {}
            for spec in level:
                dependency = None
                if (
                    spec.teacher_run is not None
                    and _stored_or_planned(store, states, spec.teacher_run) != RunStatus.DONE
                ):
                    if spec.teacher_run in summary.blocked:
                        summary.blocked[spec.run_id] = f"its teacher run {spec.teacher_run} is blocked"
                        continue
                    if spec.teacher_run not in teacher_jobs:
                        summary.blocked[spec.run_id] = _teacher_problem(states, spec.teacher_run)
                        continue
                    dependency = f"afterok:{teacher_jobs[spec.teacher_run]}"
                _prepare_resubmission(store, spec.run_id, states[spec.run_id])
                groups.setdefault(dependency, []).append(spec)
            for dependency, students in groups.items():
                teacher_jobs.update(_submit_arrays(store, profile, students, dependency, device, data_root, summary))
    return summary


def dependency_levels(runs: Sequence[RunSpec]) -> list[list[RunSpec]]:
    """``runs`` by dependency depth: level 0 those whose teacher run is not among them, level k + 1 those
    whose teacher run is at level k (TAKD's chains: teacher, assistant, student), each in plan order."""
    by_id = {spec.run_id: spec for spec in runs}
    depth: dict[str, int] = {}

    def depth_of(spec: RunSpec) -> int:
        if spec.run_id not in depth:
            teacher = by_id.get(spec.teacher_run) if spec.teacher_run is not None else None
            depth[spec.run_id] = 0 if teacher is None else depth_of(teacher) + 1
        return depth[spec.run_id]

    levels: list[list[RunSpec]] = []
    for spec in runs:
        level = depth_of(spec)
        levels.extend([] for _ in range(level + 1 - len(levels)))
        levels[level].append(spec)
    return levels


def _prepare_resubmission(store: ResultStore, run_id: str, state: RunState) -> None:
    """Before submitting a run again: keep its old failure aside, drop a job still pending on a dead teacher."""
    if state.status == RunStatus.FAILED:
        store.clear_failure(run_id)
    if state.status == RunStatus.BLOCKED and state.job_active and state.job_id:
        scancel([state.job_id])


def _stored_or_planned(store: ResultStore, states: dict[str, RunState], run_id: str) -> RunStatus:
    return states[run_id].status if run_id in states else store.status(run_id)


def _teacher_problem(states: dict[str, RunState], teacher_run: str) -> str:
    if teacher_run not in states:
        return f"teacher run {teacher_run} is not done and not part of this submission"
    teacher = states[teacher_run]
    why = blocked_reason(teacher_run, teacher)
    if teacher.status == RunStatus.FAILED:
        why += " (--retry-failed submits both again)"
    elif teacher.status == RunStatus.RUNNING:
        why += " outside SLURM; submit again once it is done"
    return why


def cancel_runs(store: ResultStore, runs: Sequence[RunSpec], log: Log = print) -> dict[str, str]:
    """scancel the queued or running jobs of ``runs``; run id -> cancelled job id.

    Students waiting (afterok) on a cancelled teacher are then cancelled by SLURM too. A job that trains
    a pack of runs (``runs_per_job`` > 1) is cancelled whole: its other unfinished runs stop with it, and
    ``log`` names them (submitting again resumes them all)."""
    todo = distinct_applicable(runs)
    with submission_lock(store.root):
        states = suite_states(store, todo, strict=True)
        cancelled = {run_id: state.job_id for run_id, state in states.items() if state.job_active and state.job_id}
        for job_id, others in _pack_mates(store, cancelled).items():
            log(f"  job {job_id} trains a pack of runs (runs_per_job): cancelling it also stops {', '.join(others)}")
        scancel(sorted(set(cancelled.values())))
    return cancelled


def _pack_mates(store: ResultStore, cancelled: dict[str, str]) -> dict[str, list[str]]:
    """Job id -> the unfinished runs it also trains that are not among ``cancelled`` (from their records)."""
    mates: dict[str, list[str]] = {}
    for run_id, job_id in cancelled.items():
        record = read_record(store, run_id) or {}
        if record.get("job_id") != job_id:
            continue
        for other in record.get("pack", []):
            unfinished = store.status(other) not in (RunStatus.DONE, RunStatus.FAILED)
            if other not in cancelled and unfinished and other not in mates.get(job_id, []):
                mates.setdefault(job_id, []).append(other)
    return mates
