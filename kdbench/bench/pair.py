"""One pair's benchmark: kdbench's step against the reference step for every method, vanilla first.

For one (teacher, student) pair and a list of methods, both loops run in this process on one device,
on random uint8 images of a data set's shape; every method and path takes its turn in every window.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from kdbench.bench.kdbench_path import KdbenchPath
from kdbench.bench.reference import ReferencePath
from kdbench.bench.settings import BenchSettings, reference_num_workers, settings_problems
from kdbench.bench.timing import pool_size, time_paths
from kdbench.bench.workload import (
    Workload,
    crop_padding,
    describe_device,
    random_split,
    resolved_terms,
    use_device,
)
from kdbench.data import DATASETS, dataset_shape
from kdbench.methods import METHODS
from kdbench.models import MODELS, model_feature_info
from kdbench.train import resolve_device


@dataclass
class PairBench:
    teacher: str
    student: str
    methods: list[str]
    settings: BenchSettings
    result: dict = field(default_factory=dict)
    #: kdbench's step seconds by Workload.key(), reused by a suite projection
    measured: dict[str, float] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # method -> Workload.key()


def canonical_model(name: str) -> str:
    """The canonical model name (UnknownNameError with a did-you-mean for a typo)."""
    return MODELS.canonical(name)


def check_methods(teacher: str, student: str, methods: Sequence[str]) -> list[str]:
    """Canonical method names, vanilla first (the overhead baseline); unknown or inapplicable ones raise."""
    names = list(dict.fromkeys(METHODS.canonical(m) for m in methods))  # UnknownNameError: did you mean
    for name in names:
        reason = METHODS.get(name).not_applicable(
            model_feature_info(teacher), model_feature_info(student), METHODS.get(name).parameter_defaults()
        )
        if reason:
            raise ValueError(f"method {name} does not apply to {teacher} -> {student}: {reason}")
    if "vanilla" in names:
        names.remove("vanilla")
    return ["vanilla", *names]


def pair_workload(teacher: str, student: str, method: str, settings: BenchSettings) -> Workload:
    """One method of a pair at the settings' batch size, numerics and data shape."""
    num_classes, shape = dataset_shape({"name": settings.dataset})
    return Workload(
        teacher=teacher,
        student=student,
        terms=resolved_terms([method]),
        num_classes=num_classes,
        image_shape=shape,
        batch_size=settings.batch_size,
        padding=crop_padding(settings.dataset, shape[1]),
        precision=settings.precision,
        channels_last=settings.channels_last,
        compile=settings.compile,
    )


def bench_pair(
    teacher: str,
    student: str,
    methods: Sequence[str],
    settings: BenchSettings,
    progress: Callable[[str], None] | None = None,
) -> PairBench:
    """Time kdbench's step and the reference step of every method (vanilla always, as the baseline)."""
    device = resolve_device(settings.device)
    problems = settings_problems(settings, device)
    if problems:
        raise ValueError("; ".join(problems))
    use_device(device)
    teacher, student = canonical_model(teacher), canonical_model(student)
    names = check_methods(teacher, student, methods)
    num_classes, shape = dataset_shape({"name": settings.dataset})
    split = random_split(pool_size(settings), num_classes, shape, settings.seed)
    workers = reference_num_workers(settings.num_workers)
    bench = PairBench(teacher, student, names, settings)
    paths: dict[tuple[str, str], KdbenchPath | ReferencePath] = {}
    for name in names:
        work = pair_workload(teacher, student, name, settings)
        paths[name, "kdbench"] = KdbenchPath(work, split, settings.seed, device)
        paths[name, "reference"] = ReferencePath(work, split, settings.seed, device, workers)
        bench.keys[name] = work.key()
    # every method and path in each window: the overhead over vanilla is as robust to drift as the speed-up
    times = time_paths(paths, settings, progress)
    nonfinite = {name: paths[name, "kdbench"].nonfinite_steps for name in names}
    del paths
    rows: dict[str, dict] = {}
    for name in names:
        kdbench_s, reference_s = statistics.median(times[name, "kdbench"]), statistics.median(times[name, "reference"])
        bench.measured[bench.keys[name]] = kdbench_s
        rows[name] = {
            "kdbench_step_s": kdbench_s,
            "reference_step_s": reference_s,
            "kdbench_images_per_s": settings.batch_size / kdbench_s,
            "reference_images_per_s": settings.batch_size / reference_s,
            "speedup": reference_s / kdbench_s,
            "overhead_vs_vanilla": None,  # filled below
            "kdbench_windows_s": times[name, "kdbench"],
            "reference_windows_s": times[name, "reference"],
            "nonfinite_steps": nonfinite[name],  # random data and teacher: a diverging loss does not stop the timing
        }
    for row in rows.values():
        row["overhead_vs_vanilla"] = row["kdbench_step_s"] / rows["vanilla"]["kdbench_step_s"]
    bench.result = {
        "device": describe_device(device),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "batch_size": settings.batch_size,
        "teacher": teacher,
        "student": student,
        "dataset": DATASETS.canonical(settings.dataset),
        "image_shape": list(shape),
        "num_classes": num_classes,
        "precision": settings.precision,
        "channels_last": settings.channels_last,
        "compile": settings.compile,
        "reference_num_workers": workers,
        "steps": settings.steps_per_window * settings.windows,
        "windows": settings.windows,
        "warmup": settings.warmup,
        "methods": rows,
    }
    return bench
