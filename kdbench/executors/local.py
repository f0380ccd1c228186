"""Train pending runs on this machine, in dependency order (teachers first).

One run at a time in this process by default, or ``workers`` runs at once in worker processes (small
CIFAR runs leave a big GPU mostly idle; several share it well). Two ``kdbench run`` on the same suite
at once never train the same run twice: each run trains under an exclusive per-run lock
(``kdbench.executors.training.train_under_lock``), and a run locked by another process is left to it.
Ctrl-C (or SIGTERM) stops at once: worker processes ignore the terminal's Ctrl-C (no traceback from an
idle one) and are ended by this process, every finished epoch stays checkpointed, and the same command
resumes (bit-identical on a CPU). A results root that takes no more writes (a full disk) stops the suite
with one message.

As an ``Executor``: ``submit`` trains before it returns; ``states`` reads the runs' files and locks;
``cancel`` has nothing to cancel (no queue), and names the process that trains each running run
instead of stopping it: that process (``kdbench run``) may be training other runs too, and Ctrl-C in
its terminal stops it cleanly.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

from kdbench.executors.base import Executor, ExecutorError, Log, RunOptions
from kdbench.executors.training import TrainingOutcome, die_with_parent, failure_is_gone, train_under_lock
from kdbench.lifecycle import RunState, RunStatus, describe_run, distinct_applicable
from kdbench.results.store import DONE, FAILED, RUNNING, ResultStore, ResultsUnwritable
from kdbench.suite import RunSpec
from kdbench.train import cpu_threads, resolve_device


@dataclass
class LocalSummary:
    """What one ``run_local`` did, by run id."""

    trained: list[str] = field(default_factory=list)
    #: done here without training an epoch: the result rebuilt from a checkpoint that held every epoch
    #: (a damaged result.json, or a run stopped after its last checkpoint); not in ``trained``
    rebuilt: list[str] = field(default_factory=list)
    skipped_done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    #: locked by another process (another ``kdbench run``, a SLURM job on this storage): left to it
    running_elsewhere: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    #: failed in an earlier ``kdbench run`` and not retried (also in ``failed``)
    failed_before: list[str] = field(default_factory=list)
    #: failed earlier for a reason now gone (their teacher file passes its check): trained again
    retried: list[str] = field(default_factory=list)
    #: why the suite stopped before its end (the results root took no more writes), or ""
    stopped: str = ""
    seconds: float = 0.0
    #: every run has ended here (the Submission protocol): there is nothing to wait for
    finished: bool = True

    def describe(self) -> str:
        """The closing lines of ``kdbench run``."""
        rebuilt = f"{len(self.rebuilt)} rebuilt, " if self.rebuilt else ""  # the line as before without any
        lines = [
            f"{len(self.trained)} trained, {rebuilt}{len(self.skipped_done)} already done, {len(self.failed)} failed, "
            f"{len(self.blocked)} blocked, {len(self.running_elsewhere)} running elsewhere in {self.seconds:.1f} s"
        ]
        if self.rebuilt:
            lines.append(
                f"  {len(self.rebuilt)} run(s) rebuilt: their checkpoint held every epoch, so only their result "
                "was written again (no epoch trained)"
            )
        if self.retried:
            lines.append(
                f"  {len(self.retried)} run(s) that had failed loading their teacher were trained again: "
                "the teacher file now passes its check"
            )
        if self.failed_before:
            lines.append(
                f"  {len(self.failed_before)} run(s) failed in an earlier run and were not trained again "
                "(kdbench status says why): fix the cause, then add --retry-failed to this command"
            )
        if self.running_elsewhere:
            lines.append(
                f"  {len(self.running_elsewhere)} run(s) are being trained by another process (or wait for a "
                "teacher it trains): run this command again later to pick up the rest"
            )
        if self.stopped:
            lines.append(f"  stopped: {self.stopped}")
        return "\n".join(lines)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.blocked or self.stopped else 0


#: ``--workers auto`` on a CPU never starts more processes than this: each holds its own copy of the data
MAX_AUTO_CPU_WORKERS = 8


def auto_workers(device: str | None) -> tuple[int, str]:
    """How many runs ``--workers auto`` trains at once on ``device``, and why.

    CPU: one run per core (a CPU run uses ``KDBENCH_CPU_THREADS`` threads, default 1, so N runs on N
    cores do not compete; measured with ``kdbench bench --packing 1,2`` on 2 cores: 2.0x the
    throughput of one), at most ``MAX_AUTO_CPU_WORKERS``. CUDA: one run, until ``kdbench bench
    --packing`` on the GPU says how many a pair's runs can share it (pass ``--workers N`` then).
    """
    if resolve_device(device).type != "cpu":
        return 1, "one run per GPU (measure more with kdbench bench --packing 1,2,4,8)"
    cores = usable_cores()
    workers = max(1, min(MAX_AUTO_CPU_WORKERS, cores // cpu_threads()))
    return workers, f"{cores} CPU core(s), {cpu_threads()} thread(s) per run"


def usable_cores(cgroup_cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The cores this process may use: its CPU affinity, capped by a container's CPU quota (cgroup v2)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = open(cgroup_cpu_max).read().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota.isdigit() and period.isdigit() and int(period) > 0:
        cores = min(cores, max(1, int(quota) // int(period)))
    return cores


def run_local(
    runs: Sequence[RunSpec],
    store: ResultStore,
    *,
    device: str | None = None,
    data_root: str | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    workers: int = 1,
    log: Callable[[str], None] = print,
) -> LocalSummary:
    """Train every run that is not done; a student waits for its teacher run (blocked if it failed)."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    summary = LocalSummary()
    pending: list[RunSpec] = []
    for spec in runs:
        if spec.not_applicable:
            continue
        status = store.status(spec.run_id)
        if status == DONE:
            summary.skipped_done.append(spec.run_id)
        elif status == FAILED and not retry_failed and not failure_is_gone(spec, store):
            summary.failed.append(spec.run_id)
            summary.failed_before.append(spec.run_id)
        else:
            if status == FAILED and not retry_failed:
                summary.retried.append(spec.run_id)
            if status == FAILED:
                store.clear_failure(spec.run_id)
            pending.append(spec)
    bar = tqdm(total=len(pending), desc="runs", unit="run", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    # with bars on screen, lines go through tqdm so they do not tear the bars
    emit = (lambda line: bar.write(line, file=sys.stdout)) if progress else log
    listed = {
        RunStatus.DONE: summary.trained,
        RunStatus.INTERRUPTED: summary.interrupted,
        RunStatus.FAILED: summary.failed,
        RunStatus.BLOCKED: summary.blocked,
        RunStatus.RUNNING: summary.running_elsewhere,
    }

    def finish(spec: RunSpec, outcome: TrainingOutcome) -> None:
        bar.update(1)
        for note in outcome.notes:
            emit(f"  repaired {spec.run_id}  {note}")
        if outcome.already_done:  # another process finished it after we looked: nothing was written here
            summary.skipped_done.append(spec.run_id)
            emit(f"  done     {spec.run_id}  {describe_run(spec)}: finished by another process meanwhile")
            return
        rebuilt = outcome.status == RunStatus.DONE and outcome.epochs_trained == 0
        (summary.rebuilt if rebuilt else listed[outcome.status]).append(spec.run_id)
        if outcome.status == RunStatus.DONE:
            result = outcome.result or {}
            how = "rebuilt from its checkpoint (no epoch trained)" if rebuilt else f"in {result['wall_time_s']:.1f} s"
            emit(
                f"  done     {spec.run_id}  {describe_run(spec)}: top-1 {result['top1_last']:.2f} "
                f"(best {result['top1_best']:.2f}) {how}"
            )
        elif outcome.status != RunStatus.INTERRUPTED:
            word = "FAILED" if outcome.status == RunStatus.FAILED else str(outcome.status)
            emit(f"  {word:<8} {spec.run_id}  {describe_run(spec)}: {outcome.reason}")

    def ready(spec: RunSpec) -> str | None:
        """None when the run can start now, else why not ("wait" while its teacher may still come)."""
        if spec.teacher_run is None:
            return None
        teacher = store.status(spec.teacher_run)
        if teacher == DONE:
            return None
        if any(p.run_id == spec.teacher_run for p in pending) or spec.teacher_run in in_flight_ids:
            return "wait"
        if teacher == RUNNING or spec.teacher_run in summary.running_elsewhere:
            return f"elsewhere: its teacher run {spec.teacher_run} is being trained by another process"
        return f"its teacher run {spec.teacher_run} is {teacher}"

    def blocked(reason: str) -> TrainingOutcome:
        if reason.startswith("elsewhere: "):  # not blocked: another process trains its teacher
            return TrainingOutcome(RunStatus.RUNNING, reason=reason.removeprefix("elsewhere: "))
        return TrainingOutcome(RunStatus.BLOCKED, reason=reason)

    in_flight_ids: set[str] = set()
    store_root = str(store.root)
    workers = min(workers, len(pending))  # no idle processes (one pending run trains in this process)
    try:
        if workers <= 1:
            while pending and not summary.stopped:
                spec = pending.pop(0)
                reason = ready(spec)
                if reason == "wait":  # its teacher comes later in the list: plans put teachers first
                    pending.append(spec)
                    continue
                if reason:
                    finish(spec, blocked(reason))
                    continue
                here = dict(device=device, data_root=data_root, progress=progress, stop_after_epochs=stop_after_epochs)
                try:
                    store.write_spec(spec)
                    finish(spec, train_under_lock(store_root, spec.run_id, **here))
                except ResultsUnwritable as error:
                    summary.stopped = str(error)
                except OSError as error:  # writing spec.yaml: the same stop, with the same one message
                    summary.stopped = f"cannot write under the results root {store.root}: {error}"
        else:
            context = multiprocessing.get_context("spawn")  # fork and CUDA do not mix
            pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=context, initializer=local_worker, initargs=(os.getpid(),)
            )
            futures: dict[Future, RunSpec] = {}
            try:
                while (pending or futures) and not summary.stopped:
                    for spec in list(pending):
                        if len(futures) >= workers:
                            break
                        reason = ready(spec)
                        if reason == "wait":
                            continue
                        pending.remove(spec)
                        if reason:
                            finish(spec, blocked(reason))
                            continue
                        try:
                            store.write_spec(spec)
                        except OSError as error:
                            summary.stopped = f"cannot write under the results root {store.root}: {error}"
                            break
                        in_flight_ids.add(spec.run_id)
                        options = dict(device=device, data_root=data_root, stop_after_epochs=stop_after_epochs)
                        futures[pool.submit(train_under_lock, store_root, spec.run_id, **options)] = spec
                    if not futures:
                        continue
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        spec = futures.pop(future)
                        in_flight_ids.discard(spec.run_id)
                        try:
                            finish(spec, future.result())
                        except ResultsUnwritable as error:
                            summary.stopped = str(error)
            except BaseException:  # Ctrl-C, SIGTERM: end the workers now (finished epochs are checkpointed)
                stop_workers(pool)
                if futures:
                    emit(
                        f"  stopped {len(futures)} run(s) in flight: "
                        + ", ".join(f"{spec.run_id} ({describe_run(spec)})" for spec in futures.values())
                    )
                raise
            if summary.stopped:
                stop_workers(pool)
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def local_worker(parent_pid: int) -> None:
    """Initializer of a local worker process: it ends with its parent, and leaves Ctrl-C to the parent
    (which ends the workers itself), so an idle worker prints no KeyboardInterrupt traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)


def stop_workers(pool: ProcessPoolExecutor, grace_s: float = 2.0) -> None:
    """End a pool's worker processes now (SIGTERM, then SIGKILL after ``grace_s``), not after their runs:
    each finished epoch is checkpointed, and a write cut short leaves only a temporary file, removed when
    the run is next trained. ``_processes`` is the pool's own table of its workers (no public API has it)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1.0)
    pool.shutdown(wait=False, cancel_futures=True)


def parse_workers(value: str, device: str | None) -> tuple[int, str]:
    """``--workers``: "auto" (see ``auto_workers``) or a positive integer; (workers, why)."""
    if value == "auto":
        return auto_workers(device)
    if not str(value).isdigit() or int(value) < 1:
        raise ExecutorError(f"--workers must be a positive integer or auto, got {value!r}")
    return int(value), "--workers"


class LocalExecutor(Executor):
    """Runs train on this machine before ``submit`` returns."""

    name = "local"
    record_file = None

    def check(self, options: RunOptions) -> None:
        if options.profile or options.profile_settings:
            raise ExecutorError("--profile is for --executor slurm")
        parse_workers(options.workers, options.device)

    def submit(
        self, runs: Sequence[RunSpec], store: ResultStore, options: RunOptions, log: Log = print
    ) -> LocalSummary:
        workers, why = parse_workers(options.workers, options.device)
        log(f"  training {workers} at a time ({why})")
        return run_local(
            runs,
            store,
            device=options.device,
            data_root=options.data_root,
            retry_failed=options.retry_failed,
            progress=options.progress,
            workers=workers,
            log=log,
        )

    def states(self, store: ResultStore, runs: Sequence[RunSpec]) -> dict[str, RunState]:
        distinct = {spec.run_id: spec for spec in runs}
        return store.states(list(distinct.values()))

    def cancel(self, store: ResultStore, runs: Sequence[RunSpec], log: Log = print) -> dict[str, str]:
        """Nothing is queued here; each running run is named with the process that trains it, not stopped."""
        for spec in distinct_applicable(runs):
            if store.status(spec.run_id) == RUNNING:
                holder = store.lock_holder(spec.run_id) or "another process"
                log(
                    f"  running  {spec.run_id}  {describe_run(spec)}: trained locally by {holder}; not a queued job, "
                    "so not cancelled here: Ctrl-C in its terminal (or kill -INT) stops it, and it resumes later"
                )
        return {}


EXECUTOR = LocalExecutor()
