"""The typed suite: the frozen dataclasses of every section, their keys and defaults.

Each section is built by one resolver that checks it (``kdbench.suite.sections`` for a run's
settings: schedule, training, data set, seeds, model options; ``kdbench.suite.structure`` for the
suite's shape: teachers, chains, pairs, methods, excludes). A resolver takes the raw YAML value and a
``Collector``, records every problem (file key, bad value, valid choices) and returns one of these
typed values, with defaults filled in, which the planner uses without checking anything again.
Defaults are written out here, next to the keys they belong to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Named schedules; a suite's ``schedule`` may name one (``schedule: crd``) or set ``preset:`` and override keys.
SCHEDULE_PRESETS: dict[str, dict[str, Any]] = {
    # SRKD paper, section 3.1 (CIFAR-10 and CIFAR-100); SGD settings from the CRD recipe.
    "srkd-cifar": {
        "epochs": 180,
        "batch_size": 64,
        "lr": 0.05,
        "milestones": [90, 120, 150],
        "lr_decay": 0.1,
        "momentum": 0.9,
        "weight_decay": 5.0e-4,
        "nesterov": False,
    },
    # SRKD paper, section 3.1 (Tiny-ImageNet).
    "srkd-tinyimagenet": {
        "epochs": 100,
        "batch_size": 64,
        "lr": 0.05,
        "milestones": [70, 80, 90],
        "lr_decay": 0.1,
        "momentum": 0.9,
        "weight_decay": 5.0e-4,
        "nesterov": False,
    },
    # The CRD code's schedule, behind every published baseline number (RepDistiller train_student.py).
    "crd": {
        "epochs": 240,
        "batch_size": 64,
        "lr": 0.05,
        "milestones": [150, 180, 210],
        "lr_decay": 0.1,
        "momentum": 0.9,
        "weight_decay": 5.0e-4,
        "nesterov": False,
    },
}
DEFAULT_SCHEDULE = "srkd-cifar"
#: keys beyond the CRD recipe's (kdbench.recipe): optimizer, lr schedule and warm-up, model selection;
#: their defaults train exactly as before, and leave run ids alone (kdbench.suite.identity)
RECIPE_KEYS = ("optimizer", "lr_schedule", "warmup_epochs", "betas", "eps", "validation", "selection", "early_stopping")
SCHEDULE_KEYS = ("preset", *SCHEDULE_PRESETS[DEFAULT_SCHEDULE], *RECIPE_KEYS)

PRECISIONS = ["fp32", "bf16"]
#: torch.compile modes of the training step; reduce-overhead and max-autotune also capture it in CUDA graphs (on CUDA)
COMPILE_MODES = ["off", "default", "reduce-overhead", "max-autotune"]
TRAINING_DEFAULTS: dict[str, Any] = {
    "precision": "fp32",
    "channels_last": True,
    "deterministic": False,
    "compile": "off",
}

#: keys every data set takes; ``groups`` (kdbench.data.grouping) relabels classes by group, e.g. [[0..4], [5..9]]
DATASET_COMMON_KEYS = ("name", "root", "download", "loader", "groups")
EXCLUDE_KEYS = ("pair", "method", "seed", "teacher", "student")


# ---------------------------------------------------------------------------------------------
# the sections


@dataclass(frozen=True)
class Schedule:
    """Epochs, batch size and the SGD step schedule of a run (lr times lr_decay at each milestone)."""

    epochs: int
    batch_size: int
    lr: float
    milestones: tuple[int, ...]
    lr_decay: float
    momentum: float
    weight_decay: float
    nesterov: bool
    # kdbench.recipe: the optimizer, the lr schedule's kind and warm-up, model selection (sections as items)
    optimizer: str = "sgd"
    lr_schedule: str = "multistep"
    warmup_epochs: int = 0
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    validation: tuple[tuple[str, Any], ...] | None = None
    selection: tuple[tuple[str, Any], ...] | None = None
    early_stopping: tuple[tuple[str, Any], ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "milestones": list(self.milestones),
            "lr_decay": self.lr_decay,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "nesterov": self.nesterov,
            "optimizer": self.optimizer,
            "lr_schedule": self.lr_schedule,
            "warmup_epochs": self.warmup_epochs,
            "betas": list(self.betas),
            "eps": self.eps,
            "validation": None if self.validation is None else dict(self.validation),
            "selection": None if self.selection is None else dict(self.selection),
            "early_stopping": None if self.early_stopping is None else dict(self.early_stopping),
        }


@dataclass(frozen=True)
class Training:
    """How the step runs: numeric precision, memory layout, determinism, compilation."""

    precision: str = "fp32"
    channels_last: bool = True
    deterministic: bool = False
    compile: str = "off"

    def as_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "channels_last": self.channels_last,
            "deterministic": self.deterministic,
            "compile": self.compile,
        }


@dataclass(frozen=True)
class DatasetConfig:
    """A registered data set and its parameters (defaults filled in), plus where it lives."""

    name: str
    values: tuple[tuple[str, Any], ...]  # every key, sorted, defaults included

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)


@dataclass(frozen=True)
class MethodConfig:
    """One row of the suite: its label, its loss terms (method name, resolved parameters), its CE weight."""

    label: str
    terms: tuple[tuple[str, dict], ...]
    ce_weight: float


@dataclass(frozen=True)
class TeacherConfig:
    """A teacher: trained by the suite (vanilla, its own seed and schedule) or loaded from a file."""

    name: str
    checkpoint: str | None
    seed: int
    schedule: Schedule
    #: the method it trains with (``method: subclass_teacher, subclasses: 5``); plain CE by default
    terms: tuple[tuple[str, dict], ...] = (("vanilla", {}),)
    #: the SHA-256 of the checkpoint's bytes (``kdbench.suite.teacher_files``); None when it is not known
    checkpoint_sha256: str | None = None


@dataclass(frozen=True)
class ChainConfig:
    """A chain of distillations (TAKD): ``models[0]`` (a teacher of the suite) teaches ``models[1]``,
    which then teaches ``models[2]``, and so on; ``methods[i]`` trains link ``i + 1``."""

    label: str
    models: tuple[str, ...]
    methods: tuple[MethodConfig, ...]
    #: position -> candidates, where the suite lets TAKD's rule choose the assistant ({choose: [...]});
    #: ``models`` holds the first candidate there until planning chooses from finished runs
    choices: Mapping[int, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Exclude:
    """Cells to leave out; every given field must match (model names canonical)."""

    teacher: str | None = None
    student: str | None = None
    method: str | None = None
    seed: int | None = None

    def matches(self, teacher: str, student: str, label: str, seed: int) -> bool:
        checks = [
            (self.teacher, teacher),
            (self.student, student),
            (self.method, label),
            (self.seed, seed),
        ]
        given = [(want, have) for want, have in checks if want is not None]
        return bool(given) and all(want == have for want, have in given)


@dataclass(frozen=True)
class SuiteVariant:
    """One point of the suite's sweep grid, validated and typed: all that ``plan()`` reads."""

    swept: Mapping[str, Any]
    dataset: DatasetConfig
    schedule: Schedule
    training: Training
    seeds: tuple[int, ...]
    teachers: tuple[TeacherConfig, ...]
    pairs: tuple[tuple[str, str], ...]
    methods: tuple[MethodConfig, ...]
    excludes: tuple[Exclude, ...] = field(default=())
    #: a pair's own student schedule, where it sets one (the CRD code's lr 0.01 for MobileNetV2 students)
    pair_schedules: Mapping[tuple[str, str], Schedule] = field(default_factory=dict)
    #: a model's own options, by canonical name (``models:`` in the suite: weights, trainable)
    model_options: Mapping[str, dict] = field(default_factory=dict)

    #: a pair's own method settings, where it refines any (mdistiller's per-pair DKD beta)
    pair_methods: Mapping[tuple[str, str], tuple[MethodConfig, ...]] = field(default_factory=dict)
    #: chains of distillations (``chains:``; TAKD's teacher -> assistant -> student)
    chains: tuple[ChainConfig, ...] = field(default=())

    def student_schedule(self, teacher: str, student: str) -> Schedule:
        return self.pair_schedules.get((teacher, student), self.schedule)

    def methods_of(self, teacher: str, student: str) -> tuple[MethodConfig, ...]:
        return self.pair_methods.get((teacher, student), self.methods)

    def options_of(self, *names: str | None) -> dict[str, dict]:
        """The options of those of ``names`` that have any (a run's ``models`` entry)."""
        return {name: dict(self.model_options[name]) for name in names if name in self.model_options}
