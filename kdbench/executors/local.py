"""Train pending runs on this machine, in dependency order (teachers first).

One run at a time in this process by default, or ``workers`` runs at once in worker processes (small
CIFAR runs leave a big GPU mostly idle; several share it well). Two ``kdbench run`` on the same suite
at once never train the same run twice: each run trains under an exclusive per-run lock, and a run
locked by another process is left to it. Ctrl-C leaves every finished epoch checkpointed; the same
command resumes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone

from kdbench.results.store import DONE, FAILED, ResultStore, RunLocked, atomic_write_json
from kdbench.suite import RunSpec
from kdbench.train import RunFailed, cpu_threads, resolve_device, train_run


@dataclass
class LocalSummary:
    trained: list[str] = field(default_factory=list)
    skipped_done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)


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


def die_with_parent(parent_pid: int) -> None:
    """Initializer of a worker process: end when the process that started it ends, even by SIGKILL.

    Otherwise a worker of a killed ``kdbench run`` trains on alone, holding its run's lock, and the
    same command run again finds the run busy (and its students blocked). Linux only (prctl); elsewhere
    only a parent already gone is noticed.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        set_parent_death_signal = 1  # PR_SET_PDEATHSIG
        ctypes.CDLL(None, use_errno=True).prctl(set_parent_death_signal, int(signal.SIGKILL))
    if os.getppid() != parent_pid:  # the parent died before the signal was asked for
        os._exit(1)


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


def describe(spec: RunSpec) -> str:
    if spec.kind == "teacher":
        return f"teacher {spec.student} seed {spec.seed}"
    sweep = "".join(f" {k.split('.')[-1]}={v}" for k, v in spec.sweep.items())
    return f"{spec.method}{sweep} {spec.pair_teacher or spec.teacher}->{spec.student} seed {spec.seed}"


def train_locked(
    store_root: str,
    run_id: str,
    device: str | None,
    data_root: str | None,
    progress: bool,
    stop_after_epochs: int | None,
) -> tuple[str, str | dict]:
    """Train one run under its lock: ("done", result) | ("interrupted", _) | ("busy" | "failed", reason)."""
    store = ResultStore(store_root)
    run_dir = store.run_dir(run_id)
    try:
        with store.lock(run_id):
            result = train_run(
                run_dir, device=device, data_root=data_root, progress=progress, stop_after_epochs=stop_after_epochs
            )
    except RunLocked:
        return "busy", "another process is training it"
    except RunFailed as error:
        return "failed", str(error)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # a bug or a broken environment: record it, go on with the suite
        atomic_write_json(
            run_dir / "failed.json",
            {
                "reason": f"{type(error).__name__}: {error}",
                "type": type(error).__name__,
                "traceback": traceback.format_exc(),
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
        return "failed", f"{type(error).__name__}: {error} (see {run_dir}/failed.json)"
    return ("done", result) if result.get("status") == "done" else ("interrupted", result)


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

    summary = LocalSummary()
    pending: list[RunSpec] = []
    for spec in runs:
        if spec.not_applicable:
            continue
        status = store.status(spec.run_id)
        if status == DONE:
            summary.skipped_done.append(spec.run_id)
        elif status == FAILED and not retry_failed:
            summary.failed.append(spec.run_id)
        else:
            if status == FAILED:
                store.clear_failure(spec.run_id)
            pending.append(spec)
    bar = tqdm(total=len(pending), desc="runs", unit="run", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    # with bars on screen, lines go through tqdm so they do not tear the bars
    emit = (lambda line: bar.write(line, file=sys.stdout)) if progress else log

    def finish(spec: RunSpec, outcome: str, payload: str | dict) -> None:
        bar.update(1)
        if outcome == "done":
            summary.trained.append(spec.run_id)
            emit(
                f"  done     {spec.run_id}  {describe(spec)}: top-1 {payload['top1_last']:.2f} "
                f"(best {payload['top1_best']:.2f}) in {payload['wall_time_s']:.1f} s"
            )
        elif outcome == "interrupted":
            summary.interrupted.append(spec.run_id)
        else:
            getattr(summary, outcome).append(spec.run_id)
            emit(
                f"  {outcome.upper() if outcome == 'failed' else outcome:<8} {spec.run_id}  {describe(spec)}: {payload}"
            )

    def ready(spec: RunSpec) -> str | None:
        """None when the run can start now, else why not ("wait" while its teacher may still come)."""
        if spec.teacher_run is None:
            return None
        teacher = store.status(spec.teacher_run)
        if teacher == DONE:
            return None
        if any(p.run_id == spec.teacher_run for p in pending) or spec.teacher_run in in_flight_ids:
            return "wait"
        return f"its teacher run {spec.teacher_run} is {teacher}"

    in_flight_ids: set[str] = set()
    store_root = str(store.root)
    workers = min(workers, len(pending))  # no idle processes (one pending run trains in this process)
    try:
        if workers <= 1:
            while pending:
                spec = pending.pop(0)
                reason = ready(spec)
                if reason == "wait":  # its teacher comes later in the list: plans put teachers first
                    pending.append(spec)
                    continue
                if reason:
                    finish(spec, "blocked", reason)
                    continue
                store.write_spec(spec)
                finish(spec, *train_locked(store_root, spec.run_id, device, data_root, progress, stop_after_epochs))
        else:
            context = multiprocessing.get_context("spawn")  # fork and CUDA do not mix
            with ProcessPoolExecutor(
                max_workers=workers, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)
            ) as pool:
                futures: dict[Future, RunSpec] = {}
                while pending or futures:
                    for spec in list(pending):
                        if len(futures) >= workers:
                            break
                        reason = ready(spec)
                        if reason == "wait":
                            continue
                        pending.remove(spec)
                        if reason:
                            finish(spec, "blocked", reason)
                            continue
                        store.write_spec(spec)
                        in_flight_ids.add(spec.run_id)
                        job = (store_root, spec.run_id, device, data_root, False, stop_after_epochs)
                        futures[pool.submit(train_locked, *job)] = spec
                    if not futures:
                        continue
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        spec = futures.pop(future)
                        in_flight_ids.discard(spec.run_id)
                        finish(spec, *future.result())
    finally:
        bar.close()
    return summary
