"""One (pair, method) to time, and the random images and models it is timed on."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kdbench.data import DATASETS, dataset_parameters
from kdbench.data.base import Augmentation, Split
from kdbench.data.loaders import make_loader
from kdbench.methods import METHODS
from kdbench.models import StagedModel, create_model
from kdbench.step import configure_backends, derive_seed

#: mean and std of the synthetic images (any value does: only the arithmetic's cost matters)
MEAN, STD = 0.5, 0.25


@dataclass(frozen=True)
class Workload:
    """One (pair, method) at one batch size and ``training`` settings on one device."""

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

    @property
    def training(self) -> dict[str, Any]:
        """The run's ``training`` settings this workload stands for (what the step builder reads)."""
        return {"precision": self.precision, "channels_last": self.channels_last, "compile": self.compile}

    def key(self) -> str:
        """What a step's cost depends on (the CE weight does not)."""
        teacher = self.teacher if uses_teacher(self.terms) else None
        fields = [teacher, self.student, self.terms, self.num_classes, self.image_shape, self.batch_size]
        return json.dumps([*fields, self.precision, self.channels_last, self.compile], sort_keys=True, default=str)


def resolved_terms(methods: Sequence[str]) -> tuple[tuple[str, dict], ...]:
    """(canonical name, every parameter at its default) per method, as a suite resolves them."""
    return tuple((METHODS.canonical(name), METHODS.get(name).parameter_defaults()) for name in methods)


def uses_teacher(terms: Sequence[tuple[str, dict]]) -> bool:
    return any(METHODS.get(name).needs_teacher for name, _ in terms)


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


def timing_loader(split: Split, work: Workload, device: torch.device, *, train: bool, seed: int) -> Any:
    """The device-resident ``tensor`` loader training uses, in the workload's layout; crop + flip when training."""
    channels = work.image_shape[0]
    return make_loader(
        split,
        kind="tensor",
        train=train,
        batch_size=work.batch_size,
        mean=(MEAN,) * channels,
        std=(STD,) * channels,
        augmentation=Augmentation(crop_padding=work.padding, horizontal_flip=True) if train else None,
        seed=seed,
        device=device,
        channels_last=work.channels_last,
    )


def use_device(device: torch.device) -> None:
    """What training sets up on the device (cuDNN autotuning on CUDA, as a run that is not
    ``training.deterministic``, and the CRD code's ``cudnn.benchmark = True``): both paths get it."""
    configure_backends({"deterministic": False}, device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_device(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


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


def build_models(work: Workload, seed: int, device: torch.device) -> tuple[StagedModel, StagedModel | None]:
    """A student (its init seeded as in training) and, for methods that use one, a teacher on ``device``
    (random weights, BN statistics calibrated); the RNG is then seeded for the method's parts."""
    torch.manual_seed(derive_seed(seed, "student-init"))
    student = create_model(work.student, work.num_classes)
    teacher = None
    if uses_teacher(work.terms) and work.teacher is not None:
        teacher = create_model(work.teacher, work.num_classes).to(device)
        calibrate_batchnorm(teacher, work.image_shape, device, seed)
    torch.manual_seed(derive_seed(seed, "method-init"))
    return student, teacher
