"""Resolvers of a suite's shape: teachers, chains, pairs (with their own schedules and method
settings), methods and their parameters, excludes; each checks its section into typed values of
``kdbench.suite.schema``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.registry import UnknownNameError, unknown_name_message
from kdbench.suite.schema import (
    EXCLUDE_KEYS,
    ChainConfig,
    Exclude,
    MethodConfig,
    Schedule,
    TeacherConfig,
)
from kdbench.suite.sections import model_name, resolve_schedule
from kdbench.suite.teacher_files import teacher_file_sha256
from kdbench.validation import Collector, Problem, describe, join


def resolve_teachers(
    teachers: Any,
    checkpoint_dir: Any,
    schedule: Schedule,
    c: Collector,
    recorded_files: Mapping[str, str] | None = None,
) -> tuple[TeacherConfig, ...]:
    """The suite's teachers; a checkpoint's content hash is read from the file (else from ``recorded_files``,
    path -> SHA-256, what the results root noted when it was here)."""
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, str):
        c.add("teacher_checkpoints", f"expected a folder path, got {describe(checkpoint_dir)}")
        checkpoint_dir = None
    if checkpoint_dir is not None and not c.check_path("teacher_checkpoints", checkpoint_dir):
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
        if checkpoint is not None and not c.check_path(f"{path}.checkpoint", checkpoint):
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
        sha256 = teacher_file_sha256(checkpoint, recorded_files) if checkpoint else None
        resolved.append(TeacherConfig(canonical, checkpoint, seed, teacher_schedule, terms, sha256))
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
        listed = isinstance(settings.get("method"), list)
        if label_problem(str(label)):
            c.add(path, label_problem(str(label)))
        methods = [
            resolve_method(str(label), entry, c, f"{path}.method" + (f"[{i}]" if listed else ""))
            for i, entry in enumerate(entries)
        ]
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


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot be a row's label (it is shown in tables and used in file names), or None."""
    if not label.strip() or any(ch in label for ch in "/\\") or not label.isprintable():
        return (
            "a label is a name shown in tables and used in file names: "
            f"no '/', '\\' or control characters, got {label!r}"
        )
    return None


def resolve_method(label: str, settings: Any, c: Collector, path: str | None = None) -> MethodConfig | None:
    """A method entry: ``kd: {}``, ``kd: {temperature: 2}`` or ``SRKD: {use: [kd, srkd], srkd: {weight: 0.1}}``."""
    from kdbench.methods import METHODS, default_ce_weight

    if path is None:  # a chain's links are checked under chains.<label>.method, its label by the chain
        path = f"methods.{label}"
        if label_problem(label):
            c.add(path, label_problem(label))
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
        if not exclude:
            c.add(path, f"names no cell: give at least one of {', '.join(EXCLUDE_KEYS)}")
            continue
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
