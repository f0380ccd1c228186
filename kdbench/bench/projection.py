"""A suite's projected cost: device-hours of every run, one after another, and with N runs at once."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from kdbench.bench.kdbench_path import KdbenchPath
from kdbench.bench.settings import BenchSettings
from kdbench.bench.timing import time_window
from kdbench.bench.workload import (
    Workload,
    calibrate_batchnorm,
    crop_padding,
    describe_device,
    random_split,
    synchronize,
    timing_loader,
    use_device,
)
from kdbench.data import dataset_shape
from kdbench.models import create_model
from kdbench.step import autocast_for
from kdbench.suite import RunSpec, load_suite, plan
from kdbench.train import evaluate, load_data, resolve_device

#: (train, test) images of the data sets whose files the projection need not read
SPLIT_SIZES = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000), "tinyimagenet": (100_000, 10_000)}
#: batches timed for one evaluation step estimate
EVAL_BATCHES = 3
EVAL_NOTE = (
    "each epoch (init epochs included) evaluates the student on ceil(test_size / batch_size) batches, and a "
    "run with a teacher evaluates the teacher once before training, each batch at the step time of "
    "kdbench.train.evaluate measured on the same device; an init-stage step (FSP) counts as a main step; "
    "start-up, data loading from disk and checkpoint writes are not counted"
)


def split_sizes(spec: RunSpec) -> tuple[int, int]:
    """(train, test) images of the suite's data set; small embedded ones are loaded to count them."""
    if spec.dataset["name"] in SPLIT_SIZES:
        return SPLIT_SIZES[spec.dataset["name"]]
    data = load_data(spec)
    return len(data.train), len(data.test)


def eval_step_seconds(
    model_name: str, work: Workload, settings: BenchSettings, device: torch.device, repeats: int = 3
) -> float:
    """One test batch through ``kdbench.train.evaluate`` (median of ``repeats`` passes after one untimed)."""
    torch.manual_seed(settings.seed)
    model = create_model(model_name, work.num_classes).to(device)
    calibrate_batchnorm(model, work.image_shape, device, settings.seed)
    channels_last = work.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    split = random_split(work.batch_size * EVAL_BATCHES, work.num_classes, work.image_shape, settings.seed)
    loader = timing_loader(split, work, device, train=False, seed=0)
    autocast = autocast_for(work.precision, device)
    evaluate(model, loader, autocast)
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        evaluate(model, loader, autocast)
        synchronize(device)
        times.append((time.perf_counter() - started) / len(loader))
    return statistics.median(times)


def project_suite(
    path: str | Path,
    overrides: Sequence[str],
    settings: BenchSettings,
    measured: dict[str, float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Device-hours of every run of a suite, one after another on this device (no packing).

    Runs are grouped by (teacher, student, method terms, batch size, precision, channels_last, compile); one
    kdbench step per group is timed (or taken from ``measured``) and multiplied by the steps its runs
    need: (init epochs + epochs) x ceil(train_size / batch_size), plus evaluation (see ``EVAL_NOTE``).
    """
    device = resolve_device(settings.device)
    use_device(device)
    suite = load_suite(path, overrides)
    runs = plan(suite)
    distinct = {spec.run_id: spec for spec in runs.runs if not spec.not_applicable}
    if not distinct:
        raise ValueError(f"{path}: the suite plans no runs to project")
    first = next(iter(distinct.values()))
    num_classes, shape = dataset_shape(first.dataset)
    train_size, test_size = split_sizes(first)
    padding = crop_padding(first.dataset["name"], shape[1])
    step_times = dict(measured or {})
    eval_times: dict[str, float] = {}
    groups: dict[str, dict] = {}
    for spec in distinct.values():
        work = Workload(
            teacher=spec.teacher,
            student=spec.student,
            terms=spec.terms,
            num_classes=num_classes,
            image_shape=shape,
            batch_size=spec.schedule["batch_size"],
            padding=padding,
            precision=spec.training.get("precision", "fp32") if device.type == "cuda" else "fp32",
            channels_last=bool(spec.training.get("channels_last")),
            compile=spec.training.get("compile", "off"),
            ce_weight=spec.ce_weight,
        )
        key = work.key()
        if key not in groups:
            pool = random_split(work.batch_size * (settings.warmup + settings.suite_steps), num_classes, shape, 0)
            kdbench = KdbenchPath(work, pool, settings.seed, device)
            if key not in step_times:
                step_times[key] = time_window(kdbench, 0, settings.warmup, settings.suite_steps)
            groups[key] = {
                "teacher": spec.teacher,
                "student": spec.student,
                "method": spec.method,
                "terms": [name for name, _ in spec.terms],
                "batch_size": work.batch_size,
                "step_s": step_times[key],
                "init_epochs": kdbench.init_epochs,
                "runs": 0,
                "train_steps": 0,
                "eval_steps": 0,
                "hours": 0.0,
                "eval_key": json.dumps([spec.student, work.batch_size, work.precision, work.channels_last]),
            }
            del kdbench
            if progress:
                progress(
                    f"timed {spec.method} {spec.teacher or '-'} -> {spec.student}: {1e3 * step_times[key]:.1f} ms/step"
                )
        group = groups[key]
        batches_per_epoch = math.ceil(train_size / work.batch_size)
        test_batches = math.ceil(test_size / work.batch_size)
        epochs = spec.schedule["epochs"] + group["init_epochs"]
        eval_models = [spec.student] + ([spec.teacher] if spec.teacher else [])
        eval_seconds = 0.0
        for model_name, passes in zip(eval_models, [epochs, 1], strict=False):
            eval_key = json.dumps([model_name, work.batch_size, work.precision, work.channels_last])
            if eval_key not in eval_times:
                eval_times[eval_key] = eval_step_seconds(model_name, work, settings, device)
            eval_seconds += passes * test_batches * eval_times[eval_key]
            group["eval_steps"] += passes * test_batches
        train_steps = epochs * batches_per_epoch
        group["runs"] += 1
        group["train_steps"] += train_steps
        group["hours"] += (train_steps * group["step_s"] + eval_seconds) / 3600
    rows = []
    for group in groups.values():
        group["eval_step_s"] = eval_times[group.pop("eval_key")]
        rows.append(group)
    train_hours = sum(g["train_steps"] * g["step_s"] for g in rows) / 3600
    total = sum(g["hours"] for g in rows)
    return {
        "suite": suite.name,
        "source": str(path),
        "overrides": list(overrides),
        "device": describe_device(device),
        "runs": len(distinct),
        "not_applicable": sum(1 for spec in runs if spec.not_applicable),
        "train_size": train_size,
        "test_size": test_size,
        "total_hours": total,
        "train_hours": train_hours,
        "eval_hours": total - train_hours,
        "packing": "none: runs one after another on one device",
        "eval": EVAL_NOTE,
        "groups": rows,
    }


def packed_projection(projection: dict, packing: dict) -> dict:
    """The suite's device-hours with the recommended N runs at once, scaled by the measured throughput gain.

    One pair's gain stands for every run of the suite: an estimate (bigger pairs gain less from
    packing, smaller ones more); run ``--packing`` on the suite's largest pair for a cautious figure.
    """
    by_count = {row["processes"]: row for row in packing["rows"]}
    if 1 not in by_count:
        return {"packing": "not projected: --packing did not measure 1 process, the baseline"}
    processes = packing["recommended_processes"]
    gain = by_count[processes]["images_per_s"] / by_count[1]["images_per_s"]
    work = packing["workload"]
    return {
        "packing": f"{processes} runs at once per device, {gain:.2f}x the throughput of one "
        f"(measured on {work['teacher']} -> {work['student']})",
        "packed_processes": processes,
        "packed_throughput_gain": gain,
        "packed_hours": projection["total_hours"] / gain,
    }
