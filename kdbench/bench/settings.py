"""What a benchmark measures and for how long: ``BenchSettings`` and the checks of its values."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kdbench.registry import unknown_name_message
from kdbench.suite import COMPILE_MODES, PRECISIONS

if TYPE_CHECKING:
    import torch

DEFAULT_METHODS = ("vanilla", "kd", "at")
#: the CRD code's ``--num_workers`` default
CRD_NUM_WORKERS = 8


@dataclass(frozen=True)
class BenchSettings:
    """What both paths share: data shape, batch, timing windows, numerics, device."""

    dataset: str = "cifar100"
    batch_size: int = 64
    steps: int = 20  # timed steps per path and method, split over ``windows``
    warmup: int = 5  # untimed steps before the first window
    windows: int = 5
    precision: str = "fp32"
    channels_last: bool = True  # kdbench path, as training's default
    compile: str = "off"  # kdbench path: torch.compile mode of the step (training.compile)
    device: str | None = None  # None or "auto": cuda if available, else cpu
    num_workers: int | None = None  # the reference's DataLoader workers; None: the CRD code's 8, capped by the CPUs
    suite_steps: int = 5  # timed steps per (pair, method) of a suite projection
    seed: int = 0

    @property
    def steps_per_window(self) -> int:
        return max(1, self.steps // self.windows)


def settings_problems(settings: BenchSettings, device: torch.device) -> list[str]:
    """Every user mistake in ``settings``, as messages naming the option and the valid values."""
    problems = []
    for name in ("batch_size", "steps", "windows", "suite_steps"):
        value = getattr(settings, name)
        if not isinstance(value, int) or value < 1:
            problems.append(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
    if not isinstance(settings.warmup, int) or settings.warmup < 0:
        problems.append(f"--warmup must be a non-negative integer, got {settings.warmup!r}")
    if settings.num_workers is not None and settings.num_workers < 0:
        problems.append(f"--num-workers must be 0 or more, got {settings.num_workers}")
    if settings.precision not in PRECISIONS:
        problems.append(f"--precision must be one of {', '.join(PRECISIONS)}, got {settings.precision!r}")
    elif settings.precision == "bf16" and device.type != "cuda":
        problems.append(f"--precision bf16 needs a CUDA device (training uses fp32 on {device.type}); use fp32")
    if settings.compile not in COMPILE_MODES:
        problems.append(unknown_name_message("--compile mode", settings.compile, COMPILE_MODES))
    return problems


def reference_num_workers(requested: int | None) -> int:
    """The CRD code's 8 DataLoader workers, capped by the CPUs this process may use."""
    if requested is not None:
        return requested
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(CRD_NUM_WORKERS, cpus)
