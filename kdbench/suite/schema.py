"""The typed suite: frozen dataclasses for every section, each built by one resolver that checks it.

A resolver takes the raw YAML value of its section and a ``Collector``; it records every problem
(file key, bad value, valid choices) and returns a typed value (with defaults filled in) that the
planner can use without checking anything again. Defaults are written out here, next to the keys
they belong to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.registry import UnknownNameError, unknown_name_message
from kdbench.validation import Collector, Problem, describe, join

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


# ---------------------------------------------------------------------------------------------
# resolvers


def resolve_schedule(schedule: Any, c: Collector, path: str, shortened: bool = False) -> Schedule:
    """A schedule from a preset name or a mapping (preset + overrides).

    ``shortened``: the epochs were cut on the command line for a quick try (``schedule.epochs=2``), so
    milestones beyond the last epoch are expected there, not a mistake in the file.
    """
    if schedule is None:
        schedule = {}
    if isinstance(schedule, str):
        schedule = {"preset": schedule}
    if not isinstance(schedule, Mapping):
        c.add(path, f"expected a preset name ({', '.join(SCHEDULE_PRESETS)}) or a mapping, got {describe(schedule)}")
        schedule = {}
    c.unknown_keys(path, schedule, sorted(SCHEDULE_KEYS))
    preset = schedule.get("preset", DEFAULT_SCHEDULE)
    if preset not in SCHEDULE_PRESETS:
        c.add(join(path, "preset"), unknown_name_message("schedule preset", preset, SCHEDULE_PRESETS))
        preset = DEFAULT_SCHEDULE
    fallback = SCHEDULE_PRESETS[preset]
    resolved = {**fallback, **{k: v for k, v in schedule.items() if k in SCHEDULE_KEYS and k != "preset"}}
    for key in ("epochs", "batch_size"):
        value = resolved[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            c.add(join(path, key), f"expected a positive integer, got {describe(value)}")
            resolved[key] = fallback[key]
    # (lower bound, inclusive?, upper bound) of each number: lr 0 would never train, momentum 1 never forgets
    ranges = {
        "lr": (0.0, False, None),
        "lr_decay": (0.0, False, None),
        "momentum": (0.0, True, 1.0),
        "weight_decay": (0.0, True, None),
    }
    for key, (low, inclusive, high) in ranges.items():
        checked = c.number(
            join(path, key),
            resolved[key],
            minimum=low if inclusive else None,
            above=None if inclusive else low,
            below=high,
        )
        resolved[key] = float(fallback[key] if checked is None else checked)
    if not isinstance(resolved["nesterov"], bool):
        c.add(join(path, "nesterov"), f"expected true or false, got {describe(resolved['nesterov'])}")
        resolved["nesterov"] = False
    elif resolved["nesterov"] and resolved["momentum"] == 0:
        c.add(
            join(path, "nesterov"),
            "nesterov: true needs momentum > 0 (torch refuses it); set a momentum or nesterov: false",
        )
    milestones = resolved["milestones"]
    if not isinstance(milestones, list) or not all(isinstance(m, int) and not isinstance(m, bool) for m in milestones):
        c.add(join(path, "milestones"), f"expected a list of epoch numbers, got {describe(milestones)}")
        milestones = fallback["milestones"]
    elif any(m < 1 for m in milestones):
        c.add(join(path, "milestones"), f"epochs are counted from 1; got {milestones}")
    elif any(a >= b for a, b in zip(milestones, milestones[1:], strict=False)):
        c.add(join(path, "milestones"), f"must be strictly increasing, got {milestones}")
    elif milestones and milestones[-1] > resolved["epochs"] and not shortened:
        c.add(
            join(path, "milestones"),
            f"{milestones[-1]} is beyond the last epoch ({resolved['epochs']}): that lr step would never happen",
        )
    resolved["milestones"] = tuple(milestones)
    _resolve_recipe(resolved, c, path)
    return Schedule(**resolved)


def _resolve_recipe(resolved: dict[str, Any], c: Collector, path: str) -> None:
    """The recipe keys (kdbench.recipe) checked and typed in place; defaults where the suite sets none."""
    from kdbench.recipe import SCHEDULE_DEFAULTS, resolve_selection, schedule_problems, selection_problems

    for key, default in SCHEDULE_DEFAULTS.items():
        resolved.setdefault(key, default)
    for key in ("validation", "selection", "early_stopping"):
        resolved.setdefault(key, None)
    problems = schedule_problems(resolved)
    problems += selection_problems(resolved["validation"], resolved["selection"], resolved["early_stopping"])
    for key, message in problems:
        c.add(join(path, key), message)
    bad = {key.split(".")[0] for key, _ in problems}
    for key in bad & set(SCHEDULE_DEFAULTS):
        resolved[key] = SCHEDULE_DEFAULTS[key]
    resolved["betas"] = tuple(float(b) for b in resolved["betas"])
    resolved["eps"] = float(resolved["eps"])
    if bad & {"validation", "selection", "early_stopping"}:
        resolved["validation"] = resolved["selection"] = resolved["early_stopping"] = None
        return
    validation = resolved["validation"]
    if validation is not None:
        resolved["validation"] = (("fraction", float(validation["fraction"])), ("seed", int(validation.get("seed", 0))))
    selection = resolve_selection(resolved["selection"], resolved["early_stopping"])
    if selection is not None:
        resolved["selection"] = (("metric", selection.metric), ("mode", selection.mode))
    if resolved["early_stopping"] is not None:
        resolved["early_stopping"] = (("patience", int(resolved["early_stopping"]["patience"])),)


def resolve_training(training: Any, c: Collector) -> Training:
    if training is None:
        training = {}
    if not isinstance(training, Mapping):
        c.add("training", f"expected a mapping, got {describe(training)}")
        return Training()
    c.unknown_keys("training", training, sorted(TRAINING_DEFAULTS))
    resolved = {**TRAINING_DEFAULTS, **{k: v for k, v in training.items() if k in TRAINING_DEFAULTS}}
    if resolved["precision"] not in PRECISIONS:
        c.add("training.precision", unknown_name_message("precision", resolved["precision"], PRECISIONS))
    if resolved["compile"] is False:  # YAML reads an unquoted `off` as false
        resolved["compile"] = "off"
    if resolved["compile"] not in COMPILE_MODES:
        c.add("training.compile", unknown_name_message("compile mode", resolved["compile"], COMPILE_MODES))
    elif resolved["compile"] != "off" and resolved["deterministic"] is True:
        # cuDNN can be made deterministic; the kernels torch.compile generates (and max-autotune's timed
        # choice of them) cannot be promised to be
        c.add(
            "training.compile",
            f"'{resolved['compile']}' cannot be combined with training.deterministic: true; "
            "set compile: off for bit-reproducible runs, or deterministic: false",
        )
    for key in ("channels_last", "deterministic"):
        if not isinstance(resolved[key], bool):
            c.add(f"training.{key}", f"expected true or false, got {describe(resolved[key])}")
    return Training(**resolved)


def resolve_dataset(dataset: Any, c: Collector) -> DatasetConfig | None:
    from kdbench.data import DATASETS, dataset_parameters
    from kdbench.data.loaders import LOADERS

    if dataset is None:
        c.add("dataset", f"missing; choose one of: {', '.join(DATASETS.names())}")
        return None
    if isinstance(dataset, str):
        dataset = {"name": dataset}
    if not isinstance(dataset, Mapping) or "name" not in dataset:
        c.add("dataset", f"expected a data set name or a mapping with 'name', got {describe(dataset)}")
        return None
    try:
        name = DATASETS.canonical(dataset["name"])
    except UnknownNameError as error:
        c.add("dataset.name", str(error))
        return None
    params = dataset_parameters(name)
    c.unknown_keys("dataset", dataset, sorted({*DATASET_COMMON_KEYS, *params}))
    loader = dataset.get("loader", "auto")
    kinds = ["auto", *LOADERS.names()]
    if loader not in kinds:
        c.add("dataset.loader", unknown_name_message("loader", loader, kinds))
    if dataset.get("root") is not None and not isinstance(dataset["root"], str):
        c.add("dataset.root", f"expected a path, got {describe(dataset['root'])}")
    if "download" in dataset and not isinstance(dataset["download"], bool):
        c.add("dataset.download", f"expected true or false, got {describe(dataset['download'])}")
    for key, default in params.items():
        if key in dataset and key not in DATASET_COMMON_KEYS:
            c.check_type(f"dataset.{key}", dataset[key], default)
    if dataset.get("groups") is not None:
        from kdbench.data import dataset_shape
        from kdbench.data.grouping import grouping_problems

        classes = dataset_shape({**dataset, "name": name, "groups": None}).num_classes
        for problem in grouping_problems(dataset["groups"], classes):
            c.add("dataset.groups", problem)
    resolved = dict(params)
    resolved.update({k: v for k, v in dataset.items() if k != "name"})
    resolved["name"] = name
    resolved.setdefault("loader", "auto")
    resolved.setdefault("root", None)
    resolved.setdefault("download", False)
    return DatasetConfig(name, tuple(sorted(resolved.items())))


def resolve_seeds(seeds: Any, c: Collector) -> tuple[int, ...]:
    if seeds is None:
        return (0,)
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        c.add("seeds", f"expected a non-empty list of integers, got {describe(seeds)}")
        return (0,)
    if len(set(seeds)) != len(seeds):
        c.add("seeds", f"seeds repeat: {seeds}")
    return tuple(seeds)


def model_name(c: Collector, path: str, name: Any) -> str | None:
    """The canonical model name, or a problem naming the nearest registered ones."""
    from kdbench.models import MODELS

    if not isinstance(name, str):
        c.add(path, f"expected a model name, got {describe(name)}")
        return None
    try:
        return MODELS.canonical(name)
    except UnknownNameError as error:
        c.add(path, str(error))
        return None


def _is_default(default: Any, value: Any) -> bool:
    import inspect

    return (
        default is not inspect.Parameter.empty
        and value == default
        and isinstance(value, bool) == isinstance(default, bool)
    )


def resolve_models(models: Any, c: Collector) -> dict[str, dict]:
    """``models: {name: {option: value}}``: a family's own parameters (the torchvision backbones'
    ``weights`` and ``trainable``), checked against the family's signature."""
    import inspect

    from kdbench.models import MODELS

    if models is None:
        return {}
    if not isinstance(models, Mapping):
        c.add("models", f"expected a mapping of model name to options, got {describe(models)}")
        return {}
    resolved = {}
    for name, options in models.items():
        canonical = model_name(c, f"models.{name}", name)
        if canonical is None:
            continue
        parameters = inspect.signature(MODELS.get(canonical)).parameters
        valid = [key for key in parameters if key not in ("num_classes", "image_shape")]
        if not isinstance(options, Mapping):
            choices = ", ".join(valid) or "none"
            c.add(f"models.{name}", f"expected a mapping of options ({choices}), got {describe(options)}")
            continue
        if not valid and options:
            c.add(f"models.{name}", f"{canonical} takes no options")
            continue
        c.unknown_keys(f"models.{name}", options, valid)
        # an option at the family's own default is no option: the run (and its id) is the plain model's
        given = {
            key: value
            for key, value in options.items()
            if key in valid and not _is_default(parameters[key].default, value)
        }
        if given:
            resolved[canonical] = given
    return resolved


def resolve_teachers(teachers: Any, checkpoint_dir: Any, schedule: Schedule, c: Collector) -> tuple[TeacherConfig, ...]:
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, str):
        c.add("teacher_checkpoints", f"expected a folder path, got {describe(checkpoint_dir)}")
        checkpoint_dir = None
    if teachers is None:
        return ()
    if not isinstance(teachers, Mapping):
        c.add("teachers", f"expected a mapping of model name to settings, got {describe(teachers)}")
        return ()
    resolved = []
    for name, settings in teachers.items():
        path = f"teachers.{name}"
        canonical = model_name(c, path, name)
        if settings is None:
            settings = {}
        if not isinstance(settings, Mapping):
            c.add(
                path,
                f"expected a mapping ({{}} to train it, {{checkpoint: PATH}} to load it), got {describe(settings)}",
            )
            continue
        terms = _teacher_terms(settings, c, path)
        checkpoint = settings.get("checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            c.add(f"{path}.checkpoint", f"expected a path, got {describe(checkpoint)}")
            checkpoint = None
        seed = settings.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            c.add(f"{path}.seed", f"expected an integer, got {describe(seed)}")
            seed = 0
        own = settings.get("schedule") or {}
        own = {"preset": own} if isinstance(own, str) else own
        if not own:
            teacher_schedule = schedule
        elif isinstance(own, Mapping) and "preset" not in own:
            # plain keys refine the suite's schedule (whose own problems are reported once, under schedule)
            scratch = Collector()
            teacher_schedule = resolve_schedule({**schedule.as_dict(), **own}, scratch, f"{path}.schedule")
            c.problems += [p for p in scratch.problems if p.path.split(".")[-1] in own]
        else:  # a teacher's own preset starts afresh
            teacher_schedule = resolve_schedule(own, c, f"{path}.schedule")
        if canonical is None:
            continue
        if checkpoint is None and checkpoint_dir:
            checkpoint = str(Path(checkpoint_dir) / f"{canonical}_vanilla" / "ckpt_epoch_240.pth")
        resolved.append(TeacherConfig(canonical, checkpoint, seed, teacher_schedule, terms))
    return tuple(resolved)


TEACHER_KEYS = ("checkpoint", "schedule", "seed", "method")


def _teacher_terms(settings: Mapping, c: Collector, path: str) -> tuple[tuple[str, dict], ...]:
    """A trained teacher's method: ``method: subclass_teacher`` with its parameters beside it
    (``subclasses: 5``); without ``method`` the teacher trains on CE alone (vanilla)."""
    from kdbench.methods import METHODS

    method = settings.get("method")
    params = {key: value for key, value in settings.items() if key not in TEACHER_KEYS}
    if method is None:
        c.unknown_keys(path, settings, list(TEACHER_KEYS))
        return (("vanilla", {}),)
    if not isinstance(method, str):
        c.add(f"{path}.method", f"expected a method name, got {describe(method)}")
        return (("vanilla", {}),)
    try:
        name = METHODS.canonical(method)
    except UnknownNameError as error:
        c.add(f"{path}.method", str(error))
        return (("vanilla", {}),)
    if METHODS.get(name).needs_teacher:
        c.add(f"{path}.method", f"{name} distils from a teacher; a teacher trains with a method that needs none")
    if settings.get("checkpoint") is not None:
        c.add(f"{path}.method", "a teacher loaded from a checkpoint is not trained: remove method or checkpoint")
    return ((name, method_params(name, params, c, path)),)


def resolve_chains(chains: Any, teachers: tuple[TeacherConfig, ...], c: Collector) -> tuple[ChainConfig, ...]:
    """``chains: {TAKD: {models: [resnet110, resnet20, resnet8], method: {use: kd}}}``: each link a run
    whose student teaches the next link; ``method`` is one method entry (as under ``methods:``) for
    every link, or a list with one per link. ``models[0]`` must be a teacher of the suite. An assistant
    may be ``{choose: [resnet20, resnet32, resnet56]}``: TAKD's rule picks it from finished runs."""
    if chains is None:
        return ()
    if not isinstance(chains, Mapping) or not chains:
        c.add("chains", f"expected a mapping of label to {{models: [...], method: ...}}, got {describe(chains)}")
        return ()
    known = {t.name for t in teachers}
    resolved = []
    for label, settings in chains.items():
        path = f"chains.{label}"
        if not isinstance(settings, Mapping):
            c.add(path, f"expected {{models: [teacher, ..., student], method: ...}}, got {describe(settings)}")
            continue
        c.unknown_keys(path, settings, ["models", "method"])
        models = settings.get("models")
        if not isinstance(models, list) or len(models) < 2:
            c.add(f"{path}.models", f"expected a list of at least two model names, got {describe(models)}")
            continue
        names, choices = [], {}
        for i, entry in enumerate(models):
            if isinstance(entry, Mapping) and 0 < i < len(models) - 1:
                c.unknown_keys(f"{path}.models[{i}]", entry, ["choose"])
                candidates = entry.get("choose")
                if not isinstance(candidates, list) or len(candidates) < 2:
                    c.add(f"{path}.models[{i}].choose", f"expected two or more model names, got {describe(candidates)}")
                    names.append(None)
                    continue
                found = [model_name(c, f"{path}.models[{i}].choose[{k}]", n) for k, n in enumerate(candidates)]
                names.append(None if None in found else found[0])
                choices[i] = tuple(found)
            else:
                names.append(model_name(c, f"{path}.models[{i}]", entry))
        if None in names:
            continue
        if len(choices) > 1:
            c.add(f"{path}.models", "at most one assistant per chain is chosen by the rule ({choose: [...]})")
            continue
        root = next((t for t in teachers if t.name == names[0]), None)
        if choices and root is not None and root.checkpoint:
            c.add(
                f"{path}.models[0]",
                "choosing the assistant needs the teacher's accuracy from its run: train it here (no checkpoint)",
            )
            continue
        if names[0] not in known:
            c.add(
                f"{path}.models[0]",
                f"the chain's first teacher '{models[0]}' is not under 'teachers:'; add '{models[0]}: {{}}' there",
            )
            continue
        entries = settings.get("method", {"use": "kd"})
        entries = entries if isinstance(entries, list) else [entries] * (len(names) - 1)
        if len(entries) != len(names) - 1:
            c.add(f"{path}.method", f"expected one method per link ({len(names) - 1}), got {len(entries)}")
            continue
        methods = [resolve_method(str(label), entry, c) for entry in entries]
        if any(m is None for m in methods):
            continue
        resolved.append(ChainConfig(str(label), tuple(names), tuple(methods), choices))  # type: ignore[arg-type]
    return tuple(resolved)


@dataclass(frozen=True)
class ResolvedPairs:
    pairs: tuple[tuple[str, str], ...] = ()
    schedules: Mapping[tuple[str, str], Schedule] = field(default_factory=dict)
    methods: Mapping[tuple[str, str], tuple[MethodConfig, ...]] = field(default_factory=dict)


def resolve_pairs(
    pairs: Any,
    teachers: tuple[TeacherConfig, ...],
    schedule: Schedule,
    methods: Any,
    c: Collector,
    shortened: bool = False,
) -> ResolvedPairs:
    """``[teacher, student]`` entries, or mappings ``{teacher: X, student: Y, schedule: {lr: 0.01},
    methods: {DKD: {dkd: {beta: 2}}}, self_distillation: true}``: ``schedule`` refines the suite's for
    this pair's students (its teacher keeps its own), ``methods`` refines the settings of the suite's
    method labels for this pair (merged over them), ``self_distillation`` declares a model distilled
    into itself (refused otherwise, since it is usually a typo)."""
    own_schedules: dict[tuple[str, str], Schedule] = {}
    own_methods: dict[tuple[str, str], tuple[MethodConfig, ...]] = {}
    if pairs is None:
        return ResolvedPairs()
    if not isinstance(pairs, list) or not pairs:
        c.add("pairs", f"expected a non-empty list of [teacher, student], got {describe(pairs)}")
        return ResolvedPairs()
    known = {t.name for t in teachers}
    resolved: list[tuple[str, str]] = []
    for i, pair in enumerate(pairs):
        path = f"pairs[{i}]"
        self_distillation = False
        pair_schedule = None
        pair_methods = None
        if isinstance(pair, Mapping):
            c.unknown_keys(path, pair, ["teacher", "student", "schedule", "methods", "self_distillation"])
            pair_methods = _pair_methods(pair.get("methods"), methods, c, f"{path}.methods")
            self_distillation = pair.get("self_distillation", False) is True
            if pair.get("schedule") is not None:
                own = pair["schedule"]
                if not isinstance(own, Mapping) or "preset" in own:
                    c.add(f"{path}.schedule", f"expected a mapping of schedule keys (no preset), got {describe(own)}")
                else:
                    pair_schedule = resolve_schedule({**schedule.as_dict(), **own}, c, f"{path}.schedule", shortened)
            pair = [pair.get("teacher"), pair.get("student")]
        if not isinstance(pair, list) or len(pair) != 2:
            c.add(path, f"expected [teacher, student], got {describe(pair)}")
            continue
        teacher = model_name(c, f"{path}[0]", pair[0])
        student = model_name(c, f"{path}[1]", pair[1])
        if teacher is not None and teacher == student and not self_distillation:
            c.add(
                path,
                f"teacher and student are both '{pair[0]}'; for self-distillation say so: "
                f"{{teacher: {pair[0]}, student: {pair[1]}, self_distillation: true}}",
            )
            continue
        if (teacher, student) in resolved:
            c.add(path, f"the pair [{pair[0]}, {pair[1]}] appears twice")
            continue
        if teacher is not None and teacher not in known:
            c.add(
                f"{path}[0]",
                f"teacher '{pair[0]}' is not under 'teachers:'; add '{pair[0]}: {{}}' there "
                f"to train it, or '{pair[0]}: {{checkpoint: PATH}}' to load it",
            )
        elif teacher is not None and student is not None:
            resolved.append((teacher, student))
            if pair_schedule is not None:
                own_schedules[(teacher, student)] = pair_schedule
            if pair_methods is not None:
                own_methods[(teacher, student)] = pair_methods
    return ResolvedPairs(tuple(resolved), own_schedules, own_methods)


def _pair_methods(refinements: Any, methods: Any, c: Collector, path: str) -> tuple[MethodConfig, ...] | None:
    """The suite's methods with one pair's refinements merged over their settings."""
    if refinements is None:
        return None
    if not isinstance(refinements, Mapping) or not isinstance(methods, Mapping):
        c.add(path, f"expected a mapping of method label to settings, got {describe(refinements)}")
        return None
    for label in refinements:
        if label not in methods:
            c.add(join(path, label), unknown_name_message("method label", label, list(methods)))
    if c.has_problems_under(path):
        return None
    from kdbench.suite.loading import deep_merge

    merged = {
        label: deep_merge(dict(settings or {}), refinements.get(label) or {}) if label in refinements else settings
        for label, settings in methods.items()
    }
    scratch = Collector()
    resolved = resolve_methods(merged, scratch)
    # problems of the suite's own entries are reported once, under methods; these are the pair's
    c.problems += [
        Problem(f"{path}.{p.path.removeprefix('methods.')}", p.message)
        for p in scratch.problems
        if p.path.split(".")[1] in refinements
    ]
    return resolved


def resolve_methods(methods: Any, c: Collector) -> tuple[MethodConfig, ...]:
    if methods is None:
        return ()
    if not isinstance(methods, Mapping) or not methods:
        c.add("methods", f"expected a mapping of label to settings, got {describe(methods)}")
        return ()
    resolved = (resolve_method(str(label), settings, c) for label, settings in methods.items())
    return tuple(m for m in resolved if m is not None)


def resolve_method(label: str, settings: Any, c: Collector) -> MethodConfig | None:
    """A method entry: ``kd: {}``, ``kd: {temperature: 2}`` or ``SRKD: {use: [kd, srkd], srkd: {weight: 0.1}}``."""
    from kdbench.methods import METHODS, default_ce_weight

    path = f"methods.{label}"
    if not label.strip() or any(ch in label for ch in "/\\") or not label.isprintable():
        c.add(
            path,
            "a label is a name shown in tables and used in file names: "
            f"no '/', '\\' or control characters, got {label!r}",
        )
    if settings is None:
        settings = {}
    if isinstance(settings, (str, list)):
        c.add(
            path,
            f"expected a mapping, got {describe(settings)}; to use a method under this label write {{use: {settings}}}",
        )
        return None
    if not isinstance(settings, Mapping):
        c.add(path, f"expected a mapping of parameters, got {describe(settings)}")
        return None
    combined = "use" in settings
    use = settings.get("use", label)
    names = [use] if isinstance(use, str) else use
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        c.add(f"{path}.use", f"expected a method name or a list of them, got {describe(use)}")
        return None
    canonical = []
    for name in names:
        try:
            canonical.append(METHODS.canonical(name))
        except UnknownNameError as error:
            c.add(f"{path}.use" if combined else path, str(error))
    if len(canonical) != len(names):
        return None
    if len(set(canonical)) != len(canonical):
        c.add(f"{path}.use", f"a method appears twice in {names}")
        return None
    ce_weight = settings.get("ce_weight")
    if ce_weight is not None:
        ce_weight = c.number(f"{path}.ce_weight", ce_weight, minimum=0.0)
    terms = []
    if combined and isinstance(use, str) and use not in settings:
        # one method under another label: its parameters may sit beside `use` ({use: fsp, init_epochs: 1})
        params = {k: v for k, v in settings.items() if k not in ("use", "ce_weight")}
        terms.append((canonical[0], method_params(canonical[0], params, c, path)))
    elif combined:
        # parameters live under each member's name: {use: [kd, srkd], srkd: {weight: 0.1}}
        c.unknown_keys(path, settings, ["use", "ce_weight", *names])
        for name, canon in zip(names, canonical, strict=True):
            terms.append((canon, method_params(canon, settings.get(name) or {}, c, f"{path}.{name}")))
    else:
        params = {k: v for k, v in settings.items() if k != "ce_weight"}
        terms.append((canonical[0], method_params(canonical[0], params, c, path)))
    if ce_weight is None:
        ce_weight = default_ce_weight(canonical)
    return MethodConfig(label, tuple(terms), float(ce_weight))


def method_params(name: str, params: Any, c: Collector, path: str) -> dict:
    """A method's parameters over its defaults, each of its default's type, then the method's own checks."""
    from kdbench.methods import METHODS

    defaults = METHODS.get(name).parameter_defaults()
    if not isinstance(params, Mapping):
        c.add(path, f"expected a mapping of parameters, got {describe(params)}")
        return dict(defaults)
    c.unknown_keys(path, params, sorted(defaults))
    resolved = dict(defaults)
    for key, value in params.items():
        if key in defaults and c.check_type(join(path, key), value, defaults[key]):
            resolved[key] = float(value) if isinstance(defaults[key], float) and isinstance(value, int) else value
            if isinstance(defaults[key], float):
                # rules every method shares: numbers are finite, weights not negative, temperatures positive
                if key == "weight" or key.endswith("_weight"):
                    c.number(join(path, key), value, minimum=0.0)
                elif key == "temperature" or key.endswith("_temperature"):
                    c.number(join(path, key), value, above=0.0)
                else:
                    c.number(join(path, key), value)
    if not c.has_problems_under(path):
        for message in METHODS.get(name).parameter_problems(resolved):
            c.add(path, message)
    return resolved


def resolve_excludes(excludes: Any, c: Collector) -> tuple[Exclude, ...]:
    if excludes is None:
        return ()
    if not isinstance(excludes, list):
        c.add("excludes", f"expected a list of {{pair, method, seed}} mappings, got {describe(excludes)}")
        return ()
    resolved = []
    for i, exclude in enumerate(excludes):
        path = f"excludes[{i}]"
        if not isinstance(exclude, Mapping):
            c.add(path, f"expected a mapping, got {describe(exclude)}")
            continue
        c.unknown_keys(path, exclude, list(EXCLUDE_KEYS))
        teacher = student = None
        if "pair" in exclude:
            pair = exclude["pair"]
            if not isinstance(pair, list) or len(pair) != 2:
                c.add(f"{path}.pair", f"expected [teacher, student], got {describe(pair)}")
                continue
            teacher = model_name(c, f"{path}.pair[0]", pair[0])
            student = model_name(c, f"{path}.pair[1]", pair[1])
        if "teacher" in exclude:
            teacher = model_name(c, f"{path}.teacher", exclude["teacher"])
        if "student" in exclude:
            student = model_name(c, f"{path}.student", exclude["student"])
        method = exclude.get("method")
        seed = exclude.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            c.add(f"{path}.seed", f"expected an integer, got {describe(seed)}")
        resolved.append(Exclude(teacher, student, None if method is None else str(method), seed))
    return tuple(resolved)
