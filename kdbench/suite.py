"""Suites: load a YAML file, validate all of it at once, and plan it into frozen run specs.

Planning is pure: besides reading the YAML (and the files it includes) nothing touches the disk, so
``kdbench plan`` shows every run before any compute is spent. A run's id is a short hash of its fully
resolved config (defaults included, where the data lives excluded), so a re-run skips what is done
and a changed hyper-parameter makes a new run. Runs are content-addressed: two suites that need the
same teacher share one run.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from kdbench.registry import UnknownNameError, nearest_first, suggestion, unknown_name_message

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

TOP_LEVEL_KEYS = {
    "name": "a short name; results go to results/<name>/ (default: the file name)",
    "description": "free text",
    "reproduces": "which paper table, e.g. srkd/table1",
    "include": "suite file(s) this one extends (paths relative to this file)",
    "dataset": "data set name, or {name: ..., root: ..., download: ..., loader: ..., <params>}",
    "schedule": "a preset name or {preset, epochs, batch_size, lr, milestones, lr_decay, momentum, weight_decay, ...}",
    "training": "{precision: fp32|bf16, channels_last: bool, deterministic: bool, compile: off|default|"
    "reduce-overhead|max-autotune}",
    "seeds": "list of integer seeds",
    "teachers": "{model: {checkpoint: PATH} or {seed: N, schedule: {...}}}",
    "teacher_checkpoints": "a folder of CRD-format teachers (<name>_vanilla/ckpt_epoch_240.pth) used by every teacher",
    "pairs": "list of [teacher, student]",
    "methods": "{label: {use: method or [methods], <method>: {params}, ce_weight: x}}",
    "sweeps": "{key.path: [values, ...]}: a grid over any parameter",
    "excludes": "list of {pair: [t, s], method: label, seed: n}",
}
SCHEDULE_KEYS = {
    "preset",
    "epochs",
    "batch_size",
    "lr",
    "milestones",
    "lr_decay",
    "momentum",
    "weight_decay",
    "nesterov",
}
DATASET_COMMON_KEYS = {"name", "root", "download", "loader"}
PRECISIONS = ["fp32", "bf16"]
#: torch.compile modes of the training step; reduce-overhead and max-autotune also capture it in CUDA graphs (on CUDA)
COMPILE_MODES = ["off", "default", "reduce-overhead", "max-autotune"]
TRAINING_KEYS = {"precision": "fp32", "channels_last": True, "deterministic": False, "compile": "off"}
#: training keys added after runs were first stored: left out of the run id at these values, so the
#: runs trained before the key existed keep their ids (and their results)
LATER_TRAINING_DEFAULTS = {"compile": "off"}
#: dataset keys that say where the data lives, not what it is: left out of run ids
DATASET_LOCATION_KEYS = {"root", "download", "cache_dir"}


# ---------------------------------------------------------------------------------------------
# errors


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


class SuiteError(Exception):
    """Every problem of a suite at once; ``str()`` is the user-facing message."""

    def __init__(self, source: str, problems: Sequence[Problem]):
        self.source = source
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        lines = [f"{self.source}: {count} problem{'s' if count != 1 else ''}:"]
        lines += [f"  - {p.path or '(top level)'}: {p.message}" for p in self.problems]
        return "\n".join(lines)


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def unknown_keys(self, path: str, mapping: Mapping, valid: Sequence[str]) -> None:
        for key in mapping:
            if key not in valid:
                choices = nearest_first(str(key), valid)
                close = suggestion(key, choices)
                hint = f" Did you mean '{close}'?" if close else ""
                self.add(_join(path, key), f"unknown key '{key}'.{hint} Valid keys: {', '.join(choices)}")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


# ---------------------------------------------------------------------------------------------
# loading: YAML, includes, command-line overrides


def parse_overrides(pairs: Sequence[str]) -> list[tuple[str, Any]]:
    """``["schedule.epochs=2", "seeds=[0]"]`` -> ``[("schedule.epochs", 2), ("seeds", [0])]`` (values are YAML)."""
    parsed = []
    for item in pairs:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SuiteError(
                "command line", [Problem(item, "an override must look like key.path=value, e.g. schedule.epochs=2")]
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            raise SuiteError("command line", [Problem(key, f"value {raw!r} is not valid YAML: {error}")]) from None
        parsed.append((key.strip(), value))
    return parsed


def _set_path(document: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = document
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


def _get_path(document: Mapping, dotted: str) -> Any:
    node: Any = document
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(dotted)
        node = node[key]
    return node


def _deep_merge(base: dict, update: Mapping) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml(path: Path, source: str) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SuiteError(source, [Problem("", f"no such file: {path}")]) from None
    except OSError as error:
        raise SuiteError(source, [Problem("", f"cannot read {path}: {error}")]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SuiteError(str(path), [Problem("", f"not valid YAML: {error}")]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise SuiteError(str(path), [Problem("", f"a suite must be a mapping of keys, got {_describe(document)}")])
    return document


def _resolve_includes(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise SuiteError(str(path), [Problem("include", f"includes itself: {chain}")])
    document = _read_yaml(path, str(path))
    includes = document.pop("include", None)
    if includes is None:
        return document
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise SuiteError(
            str(path), [Problem("include", f"expected a path or a list of paths, got {_describe(includes)}")]
        )
    merged: dict = {}
    for include in includes:
        merged = _deep_merge(merged, _resolve_includes(path.parent / include, (*seen, path)))
    return _deep_merge(merged, document)


# ---------------------------------------------------------------------------------------------
# the validated suite


@dataclass(frozen=True)
class MethodConfig:
    label: str
    terms: tuple[tuple[str, dict], ...]  # (canonical method name, fully resolved parameters)
    ce_weight: float


@dataclass(frozen=True)
class TeacherConfig:
    name: str
    checkpoint: str | None
    seed: int
    schedule: dict


@dataclass(frozen=True)
class Suite:
    source: str
    name: str
    reproduces: str | None
    document: dict  # after includes and overrides, before sweeps
    variants: tuple[tuple[dict, dict], ...]  # (swept values, the document with them applied)


def load_suite(path: str | Path, overrides: Sequence[str] = ()) -> Suite:
    """Read, merge includes, apply ``key=value`` overrides, and validate. Raises SuiteError listing every problem."""
    path = Path(path)
    source = str(path)
    document = _resolve_includes(path)
    # shorthands become mappings first, so `dataset.root=...` or `schedule.epochs=2` refine them
    if isinstance(document.get("dataset"), str):
        document["dataset"] = {"name": document["dataset"]}
    if isinstance(document.get("schedule"), str):
        document["schedule"] = {"preset": document["schedule"]}
    for key, value in parse_overrides(overrides):
        _set_path(document, key, value)
    name = document.get("name") or path.stem
    collector = _Collector()
    variants = _expand_sweeps(document, collector)
    for swept, variant in variants:
        _validate(variant, collector, swept)
    if collector.problems:
        # the same problem in several sweep points is reported once
        unique = list(dict.fromkeys(collector.problems))
        raise SuiteError(source, unique)
    return Suite(source, str(name), document.get("reproduces"), document, tuple(variants))


def _expand_sweeps(document: dict, collector: _Collector) -> list[tuple[dict, dict]]:
    sweeps = document.get("sweeps") or {}
    base = {k: v for k, v in document.items() if k != "sweeps"}
    if not isinstance(sweeps, Mapping):
        collector.add("sweeps", f"expected a mapping of key.path: [values], got {_describe(sweeps)}")
        return [({}, base)]
    keys, value_lists = [], []
    for key, values in sweeps.items():
        if not isinstance(values, list) or not values:
            collector.add(_join("sweeps", key), f"expected a non-empty list of values, got {_describe(values)}")
            continue
        top = str(key).split(".")[0]
        if top not in TOP_LEVEL_KEYS or top in {"sweeps", "include", "name"}:
            collector.add(
                _join("sweeps", key),
                f"cannot sweep '{key}': its first part must be one of "
                f"{', '.join(sorted(set(TOP_LEVEL_KEYS) - {'sweeps', 'include', 'name'}))}",
            )
            continue
        keys.append(str(key))
        value_lists.append(values)
    variants = []
    for combination in itertools.product(*value_lists):
        variant = copy.deepcopy(base)
        for key, value in zip(keys, combination, strict=True):
            _set_path(variant, key, value)
        variants.append((dict(zip(keys, combination, strict=True)), variant))
    return variants


def _validate(document: dict, c: _Collector, swept: Mapping) -> None:
    c.unknown_keys("", document, list(TOP_LEVEL_KEYS))
    for key in ("name", "description", "reproduces", "teacher_checkpoints"):
        if document.get(key) is not None and not isinstance(document[key], str):
            c.add(key, f"expected a string, got {_describe(document[key])}")
    _validate_dataset(document.get("dataset"), c)
    resolve_schedule(document.get("schedule"), c, "schedule")
    resolve_training(document.get("training"), c)
    _validate_seeds(document.get("seeds"), c)
    _validate_teachers(document.get("teachers"), c)
    _validate_pairs(document, c)
    _validate_methods(document.get("methods"), c)
    excludes = document.get("excludes") or []
    if not isinstance(excludes, list):
        c.add("excludes", f"expected a list of {{pair, method, seed}} mappings, got {_describe(excludes)}")
    else:
        for i, exclude in enumerate(excludes):
            if not isinstance(exclude, Mapping):
                c.add(f"excludes[{i}]", f"expected a mapping, got {_describe(exclude)}")
            else:
                c.unknown_keys(f"excludes[{i}]", exclude, ["pair", "method", "seed", "teacher", "student"])


def _validate_dataset(dataset: Any, c: _Collector) -> None:
    from kdbench.data import DATASETS, dataset_parameters

    if dataset is None:
        c.add("dataset", f"missing; choose one of: {', '.join(DATASETS.names())}")
        return
    if isinstance(dataset, str):
        dataset = {"name": dataset}
    if not isinstance(dataset, Mapping) or "name" not in dataset:
        c.add("dataset", f"expected a data set name or a mapping with 'name', got {_describe(dataset)}")
        return
    try:
        name = DATASETS.canonical(dataset["name"])
    except UnknownNameError as error:
        c.add("dataset.name", str(error))
        return
    params = dataset_parameters(name)
    c.unknown_keys("dataset", dataset, sorted(DATASET_COMMON_KEYS | set(params)))
    from kdbench.data.loaders import LOADERS

    loader = dataset.get("loader", "auto")
    kinds = ["auto", *LOADERS.names()]
    if loader not in kinds:
        c.add("dataset.loader", unknown_name_message("loader", loader, kinds))
    if "root" in dataset and dataset["root"] is not None and not isinstance(dataset["root"], str):
        c.add("dataset.root", f"expected a path, got {_describe(dataset['root'])}")
    if "download" in dataset and not isinstance(dataset["download"], bool):
        c.add("dataset.download", f"expected true or false, got {_describe(dataset['download'])}")
    for key, default in params.items():
        if key in dataset and key not in DATASET_COMMON_KEYS:
            _check_type(c, f"dataset.{key}", dataset[key], default)


def _check_type(c: _Collector, path: str, value: Any, default: Any) -> None:
    """Values must have their default's type (an int is fine where a float is expected)."""
    if default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        c.add(path, f"expected {type(default).__name__}, got {_describe(value)}")


def resolve_schedule(schedule: Any, c: _Collector, path: str) -> dict:
    """A schedule from a preset name or a mapping (preset + overrides); problems go to ``c``."""
    if schedule is None:
        schedule = {}
    if isinstance(schedule, str):
        schedule = {"preset": schedule}
    if not isinstance(schedule, Mapping):
        c.add(path, f"expected a preset name ({', '.join(SCHEDULE_PRESETS)}) or a mapping, got {_describe(schedule)}")
        return dict(SCHEDULE_PRESETS[DEFAULT_SCHEDULE])
    c.unknown_keys(path, schedule, sorted(SCHEDULE_KEYS))
    preset = schedule.get("preset", DEFAULT_SCHEDULE)
    if preset not in SCHEDULE_PRESETS:
        c.add(_join(path, "preset"), unknown_name_message("schedule preset", preset, SCHEDULE_PRESETS))
        preset = DEFAULT_SCHEDULE
    resolved = dict(SCHEDULE_PRESETS[preset])
    resolved.update({k: v for k, v in schedule.items() if k in SCHEDULE_KEYS and k != "preset"})
    for key in ("epochs", "batch_size"):
        value = resolved[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            c.add(_join(path, key), f"expected a positive integer, got {_describe(value)}")
    for key in ("lr", "lr_decay", "momentum", "weight_decay"):
        value = resolved[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            c.add(_join(path, key), f"expected a non-negative number, got {_describe(value)}")
        else:
            resolved[key] = float(value)
    if not isinstance(resolved["nesterov"], bool):
        c.add(_join(path, "nesterov"), f"expected true or false, got {_describe(resolved['nesterov'])}")
    milestones = resolved["milestones"]
    if not isinstance(milestones, list) or not all(isinstance(m, int) and not isinstance(m, bool) for m in milestones):
        c.add(_join(path, "milestones"), f"expected a list of epoch numbers, got {_describe(milestones)}")
    elif milestones != sorted(milestones):
        c.add(_join(path, "milestones"), f"must be increasing, got {milestones}")
    return resolved


def resolve_training(training: Any, c: _Collector) -> dict:
    if training is None:
        training = {}
    if not isinstance(training, Mapping):
        c.add("training", f"expected a mapping, got {_describe(training)}")
        return dict(TRAINING_KEYS)
    c.unknown_keys("training", training, sorted(TRAINING_KEYS))
    resolved = {**TRAINING_KEYS, **{k: v for k, v in training.items() if k in TRAINING_KEYS}}
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
            c.add(f"training.{key}", f"expected true or false, got {_describe(resolved[key])}")
    return resolved


def _validate_seeds(seeds: Any, c: _Collector) -> None:
    if seeds is None:
        return
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        c.add("seeds", f"expected a non-empty list of integers, got {_describe(seeds)}")
    elif len(set(seeds)) != len(seeds):
        c.add("seeds", f"seeds repeat: {seeds}")


def _model_name(c: _Collector, path: str, name: Any) -> str | None:
    from kdbench.models import MODELS

    if not isinstance(name, str):
        c.add(path, f"expected a model name, got {_describe(name)}")
        return None
    try:
        return MODELS.canonical(name)
    except UnknownNameError as error:
        c.add(path, str(error))
        return None


def _validate_teachers(teachers: Any, c: _Collector) -> None:
    if teachers is None:
        return
    if not isinstance(teachers, Mapping):
        c.add("teachers", f"expected a mapping of model name to settings, got {_describe(teachers)}")
        return
    for name, settings in teachers.items():
        path = f"teachers.{name}"
        _model_name(c, path, name)
        if settings is None:
            continue
        if not isinstance(settings, Mapping):
            c.add(
                path,
                f"expected a mapping ({{}} to train it, {{checkpoint: PATH}} to load it), got {_describe(settings)}",
            )
            continue
        c.unknown_keys(path, settings, ["checkpoint", "schedule", "seed"])
        if settings.get("checkpoint") is not None and not isinstance(settings["checkpoint"], str):
            c.add(f"{path}.checkpoint", f"expected a path, got {_describe(settings['checkpoint'])}")
        if "seed" in settings and (not isinstance(settings["seed"], int) or isinstance(settings["seed"], bool)):
            c.add(f"{path}.seed", f"expected an integer, got {_describe(settings['seed'])}")
        if "schedule" in settings:
            resolve_schedule(settings["schedule"], c, f"{path}.schedule")


def _validate_pairs(document: Mapping, c: _Collector) -> None:
    pairs = document.get("pairs")
    if pairs is None:
        return
    if not isinstance(pairs, list):
        c.add("pairs", f"expected a list of [teacher, student], got {_describe(pairs)}")
        return
    teachers = document.get("teachers") or {}
    from kdbench.models import MODELS

    known_teachers = {MODELS.canonical(t) for t in teachers if t in MODELS} if isinstance(teachers, Mapping) else set()
    for i, pair in enumerate(pairs):
        path = f"pairs[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            c.add(path, f"expected [teacher, student], got {_describe(pair)}")
            continue
        teacher = _model_name(c, f"{path}[0]", pair[0])
        _model_name(c, f"{path}[1]", pair[1])
        if teacher is not None and teacher not in known_teachers:
            c.add(
                f"{path}[0]",
                f"teacher '{pair[0]}' is not under 'teachers:'; add '{pair[0]}: {{}}' there "
                f"to train it, or '{pair[0]}: {{checkpoint: PATH}}' to load it",
            )


def _validate_methods(methods: Any, c: _Collector) -> None:
    if methods is None:
        return
    if not isinstance(methods, Mapping) or not methods:
        c.add("methods", f"expected a mapping of label to settings, got {_describe(methods)}")
        return
    for label, settings in methods.items():
        resolve_method(str(label), settings, c)


def resolve_method(label: str, settings: Any, c: _Collector) -> MethodConfig | None:
    """A method entry: ``kd: {}``, ``kd: {temperature: 2}`` or ``SRKD: {use: [kd, srkd], srkd: {weight: 0.1}}``."""
    from kdbench.methods import METHODS, default_ce_weight

    path = f"methods.{label}"
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        c.add(path, f"expected a mapping of parameters, got {_describe(settings)}")
        return None
    combined = "use" in settings
    use = settings.get("use", label)
    names = [use] if isinstance(use, str) else use
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        c.add(f"{path}.use", f"expected a method name or a list of them, got {_describe(use)}")
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
    if ce_weight is not None and (not isinstance(ce_weight, (int, float)) or isinstance(ce_weight, bool)):
        c.add(f"{path}.ce_weight", f"expected a number, got {_describe(ce_weight)}")
        ce_weight = None
    terms = []
    if combined and isinstance(use, str) and use not in settings:
        # one method under another label: its parameters may sit beside `use` ({use: fsp, init_epochs: 1})
        params = {k: v for k, v in settings.items() if k not in ("use", "ce_weight")}
        terms.append((canonical[0], _method_params(canonical[0], params, c, path)))
    elif combined:
        # parameters live under each member's name: {use: [kd, srkd], srkd: {weight: 0.1}}
        member_keys = {n: canon for n, canon in zip(names, canonical, strict=True)}
        c.unknown_keys(path, settings, ["use", "ce_weight", *names])
        for name, canon in member_keys.items():
            params = settings.get(name) or {}
            terms.append((canon, _method_params(canon, params, c, f"{path}.{name}")))
    else:
        params = {k: v for k, v in settings.items() if k != "ce_weight"}
        terms.append((canonical[0], _method_params(canonical[0], params, c, path)))
    if ce_weight is None:
        ce_weight = default_ce_weight(canonical)
    return MethodConfig(label, tuple(terms), float(ce_weight))


def _method_params(name: str, params: Any, c: _Collector, path: str) -> dict:
    from kdbench.methods import METHODS

    defaults = METHODS.get(name).parameter_defaults()
    if not isinstance(params, Mapping):
        c.add(path, f"expected a mapping of parameters, got {_describe(params)}")
        return dict(defaults)
    c.unknown_keys(path, params, sorted(defaults))
    resolved = dict(defaults)
    for key, value in params.items():
        if key in defaults:
            _check_type(c, _join(path, key), value, defaults[key])
            resolved[key] = float(value) if isinstance(defaults[key], float) and isinstance(value, int) else value
    if not any(p.path.startswith(path) for p in c.problems):
        for message in METHODS.get(name).parameter_problems(resolved):
            c.add(path, message)
    return resolved


# ---------------------------------------------------------------------------------------------
# planning


@dataclass(frozen=True)
class RunSpec:
    """One training run, fully resolved. Only ``config()`` goes into the run id."""

    kind: str  # "teacher" or "student"
    dataset: dict
    schedule: dict
    training: dict
    seed: int
    student: str
    teacher: str | None
    terms: tuple[tuple[str, dict], ...]
    ce_weight: float
    teacher_run: str | None = None
    teacher_checkpoint: str | None = None
    # descriptive only: not part of the id
    suite: str = ""
    method: str = ""
    sweep: dict = field(default_factory=dict)
    not_applicable: str | None = None
    #: the pair's teacher, also for runs that do not use it (Vanilla): the report's column
    pair_teacher: str | None = None

    def config(self) -> dict:
        dataset = {k: v for k, v in self.dataset.items() if k not in DATASET_LOCATION_KEYS}
        return {
            "kind": self.kind,
            "dataset": dataset,
            "schedule": self.schedule,
            "training": {k: v for k, v in self.training.items() if LATER_TRAINING_DEFAULTS.get(k, object()) != v},
            "seed": self.seed,
            "student": self.student,
            "teacher": self.teacher,
            "terms": [[name, params] for name, params in self.terms],
            "ce_weight": self.ce_weight,
            "teacher_run": self.teacher_run,
            "teacher_checkpoint": self.teacher_checkpoint,
        }

    @cached_property
    def run_id(self) -> str:
        return run_id_of(self.config())

    @property
    def pair(self) -> tuple[str | None, str]:
        return (self.pair_teacher or self.teacher, self.student)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["terms"] = [[name, params] for name, params in self.terms]
        data["run_id"] = self.run_id
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> RunSpec:
        fields = {k: v for k, v in data.items() if k != "run_id"}
        fields["terms"] = tuple((name, dict(params)) for name, params in data["terms"])
        return cls(**fields)


def run_id_of(config: Mapping) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _dataset_config(dataset: Any) -> dict:
    from kdbench.data import DATASETS, dataset_parameters

    if isinstance(dataset, str):
        dataset = {"name": dataset}
    name = DATASETS.canonical(dataset["name"])
    resolved = {k: v for k, v in dataset_parameters(name).items()}
    resolved.update({k: v for k, v in dataset.items() if k not in {"name"}})
    resolved["name"] = name
    resolved.setdefault("loader", "auto")
    resolved.setdefault("root", None)
    resolved.setdefault("download", False)
    return dict(sorted(resolved.items()))


def plan(suite: Suite) -> list[RunSpec]:
    """Every run of the suite: the pairs' teachers first, then students by pair, method, sweep point, seed."""
    from kdbench.methods import METHODS
    from kdbench.models import MODELS, model_feature_info

    teachers: dict[str, RunSpec] = {}
    students: dict[tuple[str, str, str], RunSpec] = {}
    for swept, document in suite.variants:
        c = _Collector()
        dataset = _dataset_config(document["dataset"])
        schedule = resolve_schedule(document.get("schedule"), c, "schedule")
        training = resolve_training(document.get("training"), c)
        seeds = document.get("seeds") or [0]
        checkpoint_dir = document.get("teacher_checkpoints")
        teacher_specs: dict[str, RunSpec | str] = {}
        for name, settings in (document.get("teachers") or {}).items():
            settings = settings or {}
            canonical = MODELS.canonical(name)
            checkpoint = settings.get("checkpoint")
            if checkpoint is None and checkpoint_dir:
                checkpoint = str(Path(checkpoint_dir) / f"{canonical}_vanilla" / "ckpt_epoch_240.pth")
            if checkpoint is not None:
                teacher_specs[canonical] = str(checkpoint)
                continue
            own = settings.get("schedule") or {}
            own = {"preset": own} if isinstance(own, str) else own
            # a teacher's own preset starts afresh; plain keys refine the suite's schedule
            teacher_schedule = resolve_schedule(own if "preset" in own else {**schedule, **own}, c, "")
            spec = RunSpec(
                kind="teacher",
                dataset=dataset,
                schedule=teacher_schedule,
                training=training,
                seed=int(settings.get("seed", 0)),
                student=canonical,
                teacher=None,
                terms=(("vanilla", {}),),
                ce_weight=1.0,
                suite=suite.name,
                method="Teacher",
                sweep={k: v for k, v in swept.items() if not k.startswith(("methods.", "seeds", "pairs"))},
            )
            teacher_specs[canonical] = spec
        methods = [
            resolve_method(str(label), settings, c) for label, settings in (document.get("methods") or {}).items()
        ]
        excludes = document.get("excludes") or []
        for pair in document.get("pairs") or []:
            teacher, student = MODELS.canonical(pair[0]), MODELS.canonical(pair[1])
            source = teacher_specs[teacher]
            if isinstance(source, RunSpec):  # only teachers of some pair are trained
                teachers.setdefault(source.run_id, source)
            for method in methods:
                assert method is not None  # validated
                relevant = {
                    k: v for k, v in swept.items() if not k.startswith("methods.") or k.split(".")[1] == method.label
                }
                reason = None
                for name, params in method.terms:
                    reason = reason or METHODS.get(name).not_applicable(
                        model_feature_info(teacher), model_feature_info(student), params
                    )
                for seed in seeds:
                    if _excluded(excludes, teacher, student, method.label, seed):
                        continue
                    uses_teacher = any(METHODS.get(n).needs_teacher for n, _ in method.terms)
                    spec = RunSpec(
                        kind="student",
                        dataset=dataset,
                        schedule=schedule,
                        training=training,
                        seed=seed,
                        student=student,
                        teacher=teacher if uses_teacher else None,
                        terms=method.terms,
                        ce_weight=method.ce_weight,
                        teacher_run=source.run_id if uses_teacher and isinstance(source, RunSpec) else None,
                        teacher_checkpoint=source if uses_teacher and isinstance(source, str) else None,
                        suite=suite.name,
                        method=method.label,
                        sweep=relevant,
                        not_applicable=reason,
                        pair_teacher=teacher,
                    )
                    # A Vanilla student does not depend on the teacher: one run serves every pair with
                    # that student, but each (pair, label) cell keeps its entry in the plan.
                    students.setdefault((spec.run_id, spec.method, teacher), spec)
    return list(teachers.values()) + list(students.values())


def _excluded(excludes: Sequence[Mapping], teacher: str, student: str, label: str, seed: int) -> bool:
    from kdbench.models import MODELS

    for exclude in excludes:
        checks = []
        if "pair" in exclude:
            t, s = exclude["pair"]
            checks.append(MODELS.canonical(t) == teacher and MODELS.canonical(s) == student)
        if "teacher" in exclude:
            checks.append(MODELS.canonical(exclude["teacher"]) == teacher)
        if "student" in exclude:
            checks.append(MODELS.canonical(exclude["student"]) == student)
        if "method" in exclude:
            checks.append(exclude["method"] == label)
        if "seed" in exclude:
            checks.append(exclude["seed"] == seed)
        if checks and all(checks):
            return True
    return False
