"""Training-step throughput: kdbench's path against a CRD-style reference loop, and a suite's projected cost.

For one (teacher, student) pair and a list of methods, two training loops run in the same process on
the same device, on random uint8 images of a data set's shape:

- **kdbench**: exactly what ``kdbench.train`` runs: ``create_distiller`` (teacher frozen),
  ``make_optimizer``, the device-resident ``tensor`` loader with crop + flip on, ``training_step``,
  and the loop's own per-step bookkeeping (finiteness check, loss sums, correct count).
- **reference**: the loop of the CRD code (RepDistiller ``train_student.py`` / ``helper/loops.py``):
  a torchvision ``DataLoader`` (``num_workers`` 8, capped by the CPUs) over a Dataset that decodes
  each HWC uint8 image to PIL and applies RandomCrop(padding) + RandomHorizontalFlip + ToTensor +
  Normalize; fp32, contiguous tensors; both networks' features (its ``model(x, is_feat=True)``), the
  teacher under ``no_grad``; loss = gamma * CE + alpha * KD + beta * method through kdbench's own loss
  terms (the KL term is computed with alpha = 0 when the method has no KD, as the CRD loop always
  computes it); top-1/top-5 and ``loss.item()`` every step for its meters; ``zero_grad()`` filling
  zeros and the per-parameter SGD update, as under the PyTorch it was written for. Vanilla follows its
  ``train_vanilla``: a plain ``model(x)``.

The reference's point is its data path and loop style, not different maths. Each path is timed in
windows (``torch.cuda.synchronize`` on CUDA, ``perf_counter``) that alternate between the paths, each
after untimed warm-up steps; a step time is the median over windows. A window of the reference
starts a fresh DataLoader epoch (its workers start, untimed, during the warm-up and stop after the
window), so no background worker runs while kdbench's path is timed.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdbench.data import DATASETS, dataset_parameters, dataset_shape
from kdbench.data.base import Augmentation, Split
from kdbench.data.loaders import make_loader
from kdbench.methods import METHODS, create_distiller
from kdbench.methods.kd import kd_loss
from kdbench.models import MODELS, create_model, model_feature_info
from kdbench.registry import unknown_name_message
from kdbench.step import autocast_for, build_training_step, derive_seed
from kdbench.suite import COMPILE_MODES, PRECISIONS, SCHEDULE_PRESETS, RunSpec, load_suite, plan
from kdbench.train import evaluate, resolve_device

DEFAULT_METHODS = ("vanilla", "kd", "at")
#: the CRD code's ``--num_workers`` default
CRD_NUM_WORKERS = 8
#: the CRD code's KD temperature: its loop computes the KL term for every method
CRD_KD_TEMPERATURE = 4.0
#: warm-up steps before every window after the first: enough for a fresh DataLoader epoch to fill its queue
LATER_WINDOW_WARMUP = 2
#: (train, test) images of the data sets whose files the projection need not read
SPLIT_SIZES = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000), "tinyimagenet": (100_000, 10_000)}
#: batches timed for one evaluation step estimate
EVAL_BATCHES = 3
#: mean and std of the synthetic images (any value does: only the arithmetic's cost matters)
MEAN, STD = 0.5, 0.25
EVAL_NOTE = (
    "each epoch (init epochs included) evaluates the student on ceil(test_size / batch_size) batches, and a "
    "run with a teacher evaluates the teacher once before training, each batch at the step time of "
    "kdbench.train.evaluate measured on the same device; an init-stage step (FSP) counts as a main step; "
    "start-up, data loading from disk and checkpoint writes are not counted"
)


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


def crop_padding(dataset: str, image_size: int) -> int:
    """The data set's crop padding (CIFAR 4, Tiny-ImageNet 8), else an eighth of the image size."""
    name = DATASETS.canonical(dataset)
    if name in ("cifar10", "cifar100"):
        return 4
    padding = dataset_parameters(name).get("crop_padding")
    return padding if isinstance(padding, int) else max(1, image_size // 8)


def random_split(size: int, num_classes: int, shape: Sequence[int], seed: int) -> Split:
    """Random uint8 images and labels: any content does for timing."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (size, *shape), generator=generator, dtype=torch.uint8)
    return Split(images, torch.randint(0, num_classes, (size,), generator=generator))


def use_device(device: torch.device) -> None:
    """What training sets up on the device: cuDNN autotuning on CUDA (training's default, and the CRD
    code's ``cudnn.benchmark = True``, so both paths get it)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolved_terms(methods: Sequence[str]) -> tuple[tuple[str, dict], ...]:
    """(canonical name, every parameter at its default) per method, as a suite resolves them."""
    return tuple((METHODS.canonical(name), METHODS.get(name).parameter_defaults()) for name in methods)


def uses_teacher(terms: Sequence[tuple[str, dict]]) -> bool:
    return any(METHODS.get(name).needs_teacher for name, _ in terms)


# ---------------------------------------------------------------------------------------------
# the two paths


@dataclass(frozen=True)
class Workload:
    """One (pair, method) at one batch size and precision on one device."""

    teacher: str | None
    student: str
    terms: tuple[tuple[str, dict], ...]
    num_classes: int
    image_shape: tuple[int, int, int]
    batch_size: int
    padding: int
    precision: str = "fp32"
    channels_last: bool = False
    compile: str = "off"
    ce_weight: float | None = None

    def key(self) -> str:
        """What a step's cost depends on (the CE weight does not)."""
        teacher = self.teacher if uses_teacher(self.terms) else None
        fields = [teacher, self.student, self.terms, self.num_classes, self.image_shape, self.batch_size]
        return json.dumps([*fields, self.precision, self.channels_last, self.compile], sort_keys=True, default=str)


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, image_shape: Sequence[int], device: torch.device, seed: int) -> None:
    """Give a randomly initialised network the BN statistics of its own activations, then eval mode.

    In eval mode the BN layers of an untrained network (mean 0, variance 1) do not normalise, and the
    activations of a deep residual network grow with depth until they overflow: a random frozen
    teacher would feed inf into the losses (and inf arithmetic is not what a trained teacher costs).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the calibration batches
    model.train()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(2):
        model(torch.randn((32, *image_shape), generator=generator).to(device))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()


def build_models(work: Workload, seed: int, device: torch.device) -> tuple[Any, Any]:
    """A student (its init seeded as in training) and, for methods that use one, a teacher (random
    weights, BN statistics calibrated)."""
    torch.manual_seed(derive_seed(seed, "student-init"))
    student = create_model(work.student, work.num_classes)
    teacher = None
    if uses_teacher(work.terms) and work.teacher is not None:
        teacher = create_model(work.teacher, work.num_classes).to(device)
        calibrate_batchnorm(teacher, work.image_shape, device, seed)
    torch.manual_seed(derive_seed(seed, "method-init"))
    return student, teacher


class KdbenchPath:
    """The training loop's own step: distiller, optimizer, device-resident loader, bookkeeping."""

    def __init__(self, work: Workload, split: Split, seed: int, device: torch.device | str):
        self.device = device = torch.device(device)
        channels_last = work.channels_last
        student, teacher = build_models(work, seed, device)
        self.training_step = build_training_step(
            student,
            teacher,
            terms=work.terms,
            ce_weight=work.ce_weight,
            schedule=SCHEDULE_PRESETS["crd"],
            training={"precision": work.precision, "channels_last": channels_last, "compile": work.compile},
            seed=seed,
            device=device,
        )
        self.distiller = self.training_step.distiller
        self.loader = make_loader(
            split,
            kind="tensor",
            train=True,
            batch_size=work.batch_size,
            mean=(MEAN,) * work.image_shape[0],
            std=(STD,) * work.image_shape[0],
            augmentation=Augmentation(crop_padding=work.padding, horizontal_flip=True),
            seed=derive_seed(seed, "data"),
            device=device,
            channels_last=channels_last,
        )
        self.init_epochs = self.training_step.init_epochs
        self.meter = self.training_step.begin_epoch(0)

    @property
    def nonfinite_steps(self) -> int:
        """Steps with a non-finite loss (random data and teacher may diverge; the timing goes on)."""
        return int(self.meter.nonfinite_steps.item())

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.loader.epoch(epoch))

    def step(self, *batch: torch.Tensor) -> torch.Tensor:
        """One training step and the loop's bookkeeping after it; returns the loss."""
        losses = self.training_step(batch, self.meter)  # device-side bookkeeping, no host sync
        return sum(losses.values()).detach()  # a tensor: reading it would sync the device


class CrdStyleImages(Dataset):
    """A split held as the torchvision CIFAR classes hold it (HWC uint8 NumPy), each item decoded to PIL."""

    def __init__(self, split: Split, transform: Callable, with_index: bool):
        images = split.images.permute(0, 2, 3, 1).numpy()
        self.images = np.ascontiguousarray(images[..., 0] if images.shape[-1] == 1 else images)
        self.targets = split.labels.tolist()
        self.transform = transform
        self.with_index = with_index  # the CRD code's CIFAR100Instance also returns the index

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple:
        image = self.transform(Image.fromarray(self.images[index]))
        return (image, self.targets[index], index) if self.with_index else (image, self.targets[index])


def topk_accuracy(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[torch.Tensor]:
    """Top-k accuracy in % as the CRD code's meters compute it (k capped at the class count)."""
    ks = [min(k, logits.shape[1]) for k in ks]
    _, predicted = logits.topk(max(ks), 1, True, True)
    correct = predicted.t().eq(target.view(1, -1).expand_as(predicted.t()))
    return [correct[:k].reshape(-1).float().sum(0) * (100.0 / target.size(0)) for k in ks]


class ReferencePath:
    """The CRD code's loop: per-image PIL transforms in DataLoader workers, fp32, a sync every step."""

    def __init__(self, work: Workload, split: Split, seed: int, device: torch.device | str, num_workers: int):
        self.device = device = torch.device(device)
        student, teacher = build_models(work, seed, device)
        # kdbench's loss terms (the maths is shared); the loop around them is the CRD code's
        distiller = create_distiller(student, teacher, work.terms, work.ce_weight).to(device)
        self.student, self.teacher = distiller.student, distiller.teacher
        self.terms = list(distiller.terms.values())
        self.gamma = distiller.ce_weight
        self.kl_with_zero_alpha = self.teacher is not None and "kd" not in distiller.terms
        self.trainable = [self.student, *self.terms]
        s = SCHEDULE_PRESETS["crd"]
        self.optimizer = torch.optim.SGD(
            distiller.trainable_parameters(),
            lr=s["lr"],
            momentum=s["momentum"],
            weight_decay=s["weight_decay"],
            foreach=False,  # the per-parameter update of the PyTorch the CRD code was written for
        )
        channels = work.image_shape[0]
        from torchvision import transforms  # seconds to import: only the reference path needs it

        transform = transforms.Compose(
            [
                transforms.RandomCrop(work.image_shape[1], padding=work.padding),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize((MEAN,) * channels, (STD,) * channels),
            ]
        )
        self.loader = DataLoader(
            CrdStyleImages(split, transform, with_index=self.teacher is not None),
            batch_size=work.batch_size,
            shuffle=True,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(derive_seed(seed, "reference-data")),
        )

    def batches(self, epoch: int) -> Iterator[tuple]:
        for module in self.trainable:  # train mode at the start of an epoch, the teacher in eval mode
            module.train()
        if self.teacher is not None:
            self.teacher.eval()
        return iter(self.loader)  # a fresh epoch: its workers start now

    def step(self, *batch: torch.Tensor) -> float:
        """One step of the CRD loop on a DataLoader batch (images, labels[, indices]); returns the loss."""
        images, target = batch[0].float().to(self.device), batch[1].to(self.device)
        if self.teacher is None:  # train_vanilla
            logits = self.student(images)
            loss = self.gamma * F.cross_entropy(logits, target)
        else:  # train_distill
            student_features = self.student.forward_features(images)
            with torch.no_grad():
                teacher_features = self.teacher.forward_features(images)
            logits = student_features.logits
            loss = self.gamma * F.cross_entropy(logits, target)
            if self.kl_with_zero_alpha:
                loss = loss + 0.0 * kd_loss(logits, teacher_features.logits, CRD_KD_TEMPERATURE)
            for term in self.terms:
                loss = loss + sum(term(student_features, teacher_features, target).values())
        topk_accuracy(logits, target)
        value = loss.item()
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        self.optimizer.step()
        return value


def time_window(path: KdbenchPath | ReferencePath, epoch: int, warmup: int, steps: int) -> float:
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
    paths: dict[Any, KdbenchPath | ReferencePath],
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


# ---------------------------------------------------------------------------------------------
# a pair


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


def describe_device(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


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


# ---------------------------------------------------------------------------------------------
# a suite


def split_sizes(spec: RunSpec) -> tuple[int, int]:
    """(train, test) images of the suite's data set; small embedded ones are loaded to count them."""
    if spec.dataset["name"] in SPLIT_SIZES:
        return SPLIT_SIZES[spec.dataset["name"]]
    from kdbench.train import load_data

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
    channels = work.image_shape[0]
    loader = make_loader(
        split,
        kind="tensor",
        train=False,
        batch_size=work.batch_size,
        mean=(MEAN,) * channels,
        std=(STD,) * channels,
        augmentation=None,
        seed=0,
        device=device,
        channels_last=channels_last,
    )
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
    distinct: dict[str, RunSpec] = {}
    for spec in runs:
        if not spec.not_applicable:
            distinct.setdefault(spec.run_id, spec)
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


# ---------------------------------------------------------------------------------------------
# output


def format_pair_table(result: dict) -> str:
    from tabulate import tabulate

    rows = [
        [
            name,
            1e3 * row["kdbench_step_s"],
            row["kdbench_images_per_s"],
            1e3 * row["reference_step_s"],
            row["reference_images_per_s"],
            row["speedup"],
            row["overhead_vs_vanilla"],
        ]
        for name, row in result["methods"].items()
    ]
    headers = [
        "method",
        "kdbench ms/step",
        "kdbench img/s",
        "reference ms/step",
        "reference img/s",
        "speedup",
        "overhead vs vanilla",
    ]
    return tabulate(rows, headers=headers, floatfmt=(None, ".1f", ".0f", ".1f", ".0f", ".2f", ".2f"))


def format_projection(projection: dict) -> str:
    from tabulate import tabulate

    rows = [
        [
            g["method"],
            g["teacher"] or "-",
            g["student"],
            g["runs"],
            1e3 * g["step_s"],
            1e3 * g["eval_step_s"],
            g["hours"],
        ]
        for g in projection["groups"]
    ]
    table = tabulate(
        rows,
        headers=["method", "teacher", "student", "runs", "ms/step", "eval ms/batch", "hours"],
        floatfmt=(None, None, None, "d", ".1f", ".1f", ".2f"),
    )
    return (
        f"{table}\n\nsuite {projection['suite']}: {projection['runs']} runs "
        f"({projection['not_applicable']} not applicable), {projection['total_hours']:.2f} device-hours on "
        f"{projection['device']} one run after another ({projection['train_hours']:.2f} training, "
        f"{projection['eval_hours']:.2f} evaluation)"
        + (
            f"; {projection['packed_hours']:.2f} device-hours with {projection['packing']}"
            if "packed_hours" in projection
            else ""
        )
        + f"\neval: {projection['eval']}"
    )
