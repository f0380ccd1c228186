"""Timing windows: seconds per step of a path, paths taking turns so that drift slows them alike.

Each path is timed in windows (``torch.cuda.synchronize`` on CUDA, ``perf_counter``) after untimed
warm-up steps; a step time is the median over windows. A window of the reference starts a fresh
DataLoader epoch (its workers start, untimed, during the warm-up and stop after the window), so no
background worker runs while kdbench's path is timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import torch

from kdbench.bench.settings import BenchSettings
from kdbench.bench.workload import synchronize

#: warm-up steps before every window after the first: enough for a fresh DataLoader epoch to fill its queue
LATER_WINDOW_WARMUP = 2


class TimedPath(Protocol):
    """A training loop the benchmark can time: kdbench's or the reference."""

    device: torch.device

    def batches(self, epoch: int) -> Any: ...

    def step(self, *batch: torch.Tensor) -> Any: ...


def time_window(path: TimedPath, epoch: int, warmup: int, steps: int) -> float:
    """Seconds per step over ``steps`` steps after ``warmup`` untimed ones; loading the data is timed too."""
    batches = path.batches(epoch)
    for _ in range(warmup):
        path.step(*next(batches))
    synchronize(path.device)
    started = time.perf_counter()
    for _ in range(steps):
        path.step(*next(batches))
    synchronize(path.device)
    elapsed = time.perf_counter() - started
    del batches  # a DataLoader iterator stops its workers
    return elapsed / steps


def pool_size(settings: BenchSettings) -> int:
    """Images enough for the longest window: one epoch never ends inside a window."""
    return settings.batch_size * (max(settings.warmup, LATER_WINDOW_WARMUP) + settings.steps_per_window)


def time_paths(
    paths: dict[Any, TimedPath],
    settings: BenchSettings,
    progress: Callable[[str], None] | None = None,
) -> dict[Any, list[float]]:
    """Seconds per step of every path in each window; within a window the paths take turns, the order
    flipping each window, so a machine whose speed drifts slows them alike and ratios stay meaningful."""
    times: dict[Any, list[float]] = {key: [] for key in paths}
    order = list(paths)
    for window in range(settings.windows):
        warmup = settings.warmup if window == 0 else min(settings.warmup, LATER_WINDOW_WARMUP)
        for key in order if window % 2 == 0 else reversed(order):
            times[key].append(time_window(paths[key], window, warmup, settings.steps_per_window))
        if progress:
            progress(f"timed window {window + 1}/{settings.windows}")
    return times
