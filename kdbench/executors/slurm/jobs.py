"""What a SLURM job runs: ``TrainJob`` (one run) and ``PackedTrainJob`` (``runs_per_job`` runs at once).

Pickled by submitit, they hold paths and options only, never a model. Both train through
``kdbench.executors.training.train_under_lock``, which resumes from the run's last epoch checkpoint, and
both are submitit ``Checkpointable``: on preemption or near the time limit submitit calls ``checkpoint``
and requeues the same job, which resumes with the result an uninterrupted run would have had.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import submitit

from kdbench.executors.training import TrainingOutcome, die_with_parent, train_under_lock
from kdbench.lifecycle import RunStatus
from kdbench.results.store import ResultStore


class TrainJob(submitit.helpers.Checkpointable):
    """One run, trained inside a SLURM job. Pickled by submitit: it holds paths and options only."""

    def __init__(self, run_dir: str, device: str | None = None, data_root: str | None = None):
        self.run_dir = str(run_dir)
        self.device = device
        self.data_root = data_root

    def __call__(self) -> dict:
        """The run's result; a failure is recorded in failed.json and raised, so the job fails (afterok holds)."""
        run_dir = Path(self.run_dir)
        use_allocated_cpus()
        outcome = train_under_lock(
            run_dir.parent.parent, run_dir.name, device=self.device, data_root=self.data_root, reraise=True
        )
        return outcome.result or {}

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called on preemption or near the time limit: every finished epoch is already in checkpoint.pt,
        so requeueing the same run resumes it exactly."""
        return submitit.helpers.DelayedSubmission(TrainJob(self.run_dir, self.device, self.data_root))


def use_allocated_cpus() -> None:
    """torch threads = the job's CPUs (``SLURM_CPUS_PER_TASK``).

    Without cgroups a job sees every core of the node; torch would start a thread per core in every job
    and the jobs sharing a node would slow each other down many times over."""
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
    A run whose process died (out of memory, killed) gets no failed.json: its job's log says why, and the
    job's state makes it failed. Pickled by submitit: it holds paths and options only.
    """

    def __init__(self, run_dirs: Sequence[str], device: str | None = None, data_root: str | None = None):
        self.run_dirs = [str(run_dir) for run_dir in run_dirs]
        self.device = device
        self.data_root = data_root

    def __call__(self) -> dict[str, dict]:
        """Train every run of the pack; run id -> result."""
        threads = cpus_per_process(len(self.run_dirs))
        outcomes: dict[str, TrainingOutcome] = {}
        # spawn: fork and CUDA do not mix, and each run needs its own torch state (threads, seeds, device)
        context = multiprocessing.get_context("spawn")
        others = set(multiprocessing.active_children())
        # SLURM sends its preemption / time-limit warning (and, on preemption, SIGTERM) to every process of the
        # job. Only this one may act on them (submitit checkpoints the pack and requeues the job; it ignores
        # SIGTERM): the processes started here (the runs, multiprocessing's resource tracker) inherit both
        # signals blocked, so neither can kill a run; this process stops them itself (below).
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {preemption_signal(), signal.SIGTERM})
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
                    device = member_device(self.device, index)
                    job = (str(run_dir.parent.parent), run_dir.name, device, self.data_root, threads)
                    futures[pools[-1].submit(train_pack_member, *job)] = run_dir.name
            finally:
                # a signal that came meanwhile is delivered here, inside the try that stops the runs
                signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
            for future in as_completed(futures):
                run_id = futures[future]
                try:
                    outcomes[run_id] = future.result()
                except Exception as error:  # its process died (out of memory, killed): no failed.json to read
                    why = f"its process died: {type(error).__name__}: {error}"
                    outcomes[run_id] = TrainingOutcome(RunStatus.FAILED, reason=why)
                log_outcome(run_id, outcomes[run_id])
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
        unfinished = {run_id: outcome for run_id, outcome in outcomes.items() if outcome.status != RunStatus.DONE}
        if unfinished:
            reasons = "; ".join(
                f"{run_id} {outcome.status}: {outcome.reason}" for run_id, outcome in unfinished.items()
            )
            raise PackFailed(
                f"{len(unfinished)} of {len(self.run_dirs)} runs of this job did not finish "
                f"({', '.join(unfinished)}): {reasons}"
            )
        return {run_id: outcome.result or {} for run_id, outcome in outcomes.items()}

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called on preemption or near the time limit: the same pack again. On requeue, runs that are done
        return their result.json at once and the others resume from their last epoch."""
        return submitit.helpers.DelayedSubmission(PackedTrainJob(self.run_dirs, self.device, self.data_root))


def member_device(device: str | None, index: int) -> str | None:
    """The device of a pack's ``index``-th run: with several GPUs in the job (``gpus_per_run`` > 1), the
    runs take turns over them; an explicit ``cuda:N`` or ``cpu`` is kept."""
    visible = [gpu for gpu in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if gpu.strip()]
    if device in (None, "auto", "cuda") and len(visible) > 1:
        return f"cuda:{index % len(visible)}"
    return device


def cpus_per_process(pack_size: int) -> int | None:
    """Each run's equal part of the job's CPUs (``cpus_per_run``; see ``use_allocated_cpus`` for why)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    return max(1, int(cpus) // pack_size) if cpus and cpus.isdigit() else None


def train_pack_member(
    store_root: str, run_id: str, device: str | None, data_root: str | None, threads: int | None
) -> TrainingOutcome:
    """One run of a pack, in its own process: done at once if it is done, else ``train_under_lock``."""
    # The job's own process handles SLURM's preemption warning and SIGTERM (see PackedTrainJob); here they
    # would kill the run.
    for handled_by_the_job in (preemption_signal(), signal.SIGTERM):
        signal.signal(handled_by_the_job, signal.SIG_IGN)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    finished = ResultStore(store_root).result(run_id)
    if finished is not None:  # a requeued pack: this run finished before the preemption
        return TrainingOutcome(RunStatus.DONE, finished)
    return train_under_lock(store_root, run_id, device=device, data_root=data_root)


def preemption_signal() -> signal.Signals:
    """The signal submitit asks SLURM to send before the time limit (and on preemption)."""
    return getattr(signal, f"SIG{submitit.JobEnvironment.USR_SIG}", signal.SIGUSR2)


def log_outcome(run_id: str, outcome: TrainingOutcome) -> None:
    """One line in the job's log saying which run ended how."""
    if outcome.status == RunStatus.DONE and outcome.result is not None:
        result = outcome.result
        line = f"done {run_id}: top-1 {result['top1_last']:.2f} (best {result['top1_best']:.2f})"
    else:
        line = f"{outcome.status} {run_id}: {outcome.reason or outcome.result}"
    print(f"kdbench pack: {line}", flush=True)
