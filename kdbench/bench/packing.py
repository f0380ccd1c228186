"""Throughput of N runs sharing one device: what ``--workers N`` and ``runs_per_job: N`` buy.

For each N, N processes (spawned, as the local executor and a packed SLURM job start them) each build
kdbench's training step for the same (pair, method) on their own random images, take their warm-up
steps, wait for each other at a barrier, then time the same number of steps. The device's
throughput at N is N x steps x batch / the slowest process's time: what a suite of such runs gets
when N of them train at once. A small CIFAR network at batch 64 leaves most of a big GPU idle
(launch- and Python-bound), so N > 1 can multiply throughput until the device is busy.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict

import torch

from kdbench.bench.kdbench_path import KdbenchPath
from kdbench.bench.settings import BenchSettings
from kdbench.bench.workload import Workload, random_split, synchronize, use_device
from kdbench.executors.local import die_with_parent
from kdbench.train import cpu_threads, resolve_device

#: N whose throughput is within this fraction of the best measured one is good enough: fewer
#: processes hold less memory and leave the rest of the device to other users
RECOMMEND_WITHIN = 0.9
#: seconds a process may take to start, build its step and warm up (compiling included)
START_TIMEOUT_S = 900


class PackingBenchFailed(RuntimeError):
    """A process of the packing benchmark failed or died (the device ran out of memory, say)."""


def _packed_process(
    work: Workload,
    settings: dict,
    index: int,
    barrier: multiprocessing.synchronize.Barrier,
    answers: multiprocessing.Queue,
) -> None:
    """One of N processes: build the step, warm up, wait for the others, time ``steps`` steps."""
    try:
        die_with_parent(settings["parent_pid"])  # a killed benchmark leaves no process behind
        device = resolve_device(settings["device"])
        use_device(device)
        if device.type == "cpu":
            torch.set_num_threads(cpu_threads())  # as a training run: one thread unless KDBENCH_CPU_THREADS
        steps, warmup = settings["steps"], settings["warmup"]
        split = random_split(work.batch_size * (warmup + steps), work.num_classes, work.image_shape, index)
        path = KdbenchPath(work, split, settings["seed"] + index, device)
        batches = path.batches(0)
        for _ in range(warmup):
            path.step(*next(batches))
        synchronize(device)
        barrier.wait(timeout=START_TIMEOUT_S)
        started = time.perf_counter()
        for _ in range(steps):
            path.step(*next(batches))
        synchronize(device)
        answers.put((index, time.perf_counter() - started, None))
    except Exception as error:  # reported by the parent, which names the process
        barrier.abort()
        answers.put((index, None, f"{type(error).__name__}: {error}"))


def time_packed(work: Workload, settings: BenchSettings, processes: int) -> list[float]:
    """Seconds each of ``processes`` concurrent processes took for ``settings.steps`` steps."""
    context = multiprocessing.get_context("spawn")  # fork and CUDA do not mix
    barrier, answers = context.Barrier(processes), context.Queue()
    shared = {
        "device": settings.device,
        "steps": settings.steps,
        "warmup": settings.warmup,
        "seed": settings.seed,
        "parent_pid": os.getpid(),
    }
    workers = [
        context.Process(target=_packed_process, args=(work, shared, index, barrier, answers), daemon=True)
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    seconds: dict[int, float] = {}
    problems: dict[int, str] = {}
    deadline = time.monotonic() + START_TIMEOUT_S + 60 * settings.steps
    try:
        while len(seconds) + len(problems) < processes:
            try:
                index, elapsed, problem = answers.get(timeout=1.0)
            except queue.Empty:
                # A process killed outright (out of memory, a CUDA abort) never answers: name it, free the
                # others from the barrier. (One that answered exits with 0, its answer already sent.)
                for index, worker in enumerate(workers):
                    if index not in seconds and index not in problems and worker.exitcode not in (None, 0):
                        problems[index] = f"died with exit code {worker.exitcode}"
                        barrier.abort()
                if time.monotonic() > deadline:
                    silent = [i + 1 for i in range(processes) if i not in seconds and i not in problems]
                    problems.update({i - 1: "no answer in time" for i in silent})
                continue
            if problem:
                problems[index] = problem
            else:
                seconds[index] = elapsed
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    if problems:
        described = "; ".join(f"process {i + 1}/{processes}: {why}" for i, why in sorted(problems.items()))
        raise PackingBenchFailed(f"packing benchmark with {processes} processes failed: {described}")
    return [seconds[index] for index in range(processes)]


def bench_packing(
    work: Workload,
    settings: BenchSettings,
    counts: Sequence[int],
    repeats: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Device throughput with 1..N concurrent runs of one workload; the recommended N.

    With ``repeats`` > 1 every count is measured that many times, the counts taking turns, and the
    median throughput is kept (a machine whose speed drifts then slows every count alike).
    """
    counts = sorted(set(counts))
    throughputs: dict[int, list[float]] = {n: [] for n in counts}
    for repeat in range(repeats):
        for n in counts if repeat % 2 == 0 else reversed(counts):
            throughputs[n].append(packed_images_per_s(work, settings, n))
            if progress:
                progress(f"packing: {n} process(es), repeat {repeat + 1}/{repeats}")
    return packing_summary(work, settings, throughputs, repeats)


def packed_images_per_s(work: Workload, settings: BenchSettings, processes: int) -> float:
    """The device's throughput with ``processes`` runs at once: all images of all runs / the slowest run's time."""
    seconds = time_packed(work, settings, processes)
    return processes * settings.steps * work.batch_size / max(seconds)


def packing_summary(work: Workload, settings: BenchSettings, throughputs: dict[int, list[float]], repeats: int) -> dict:
    """Rows per count (median throughput, per run, against the fewest processes) and the recommended N."""
    counts = sorted(n for n, values in throughputs.items() if values)
    rows = []
    single = statistics.median(throughputs[counts[0]])
    for n in counts:
        images_per_s = statistics.median(throughputs[n])
        rows.append(
            {
                "processes": n,
                "images_per_s": images_per_s,
                "images_per_s_per_run": images_per_s / n,
                "speedup_vs_fewest": images_per_s / single,
                "measurements": throughputs[n],
            }
        )
    best = max(row["images_per_s"] for row in rows)
    recommended = next(row["processes"] for row in rows if row["images_per_s"] >= RECOMMEND_WITHIN * best)
    return {
        "workload": {key: value for key, value in asdict(work).items() if key != "ce_weight"},
        "steps": settings.steps,
        "warmup": settings.warmup,
        "repeats": repeats,
        "cpu_threads_per_process": cpu_threads() if resolve_device(settings.device).type == "cpu" else None,
        "rows": rows,
        "recommended_processes": recommended,
        "recommended_rule": f"fewest processes within {RECOMMEND_WITHIN:.0%} of the best throughput measured",
    }
