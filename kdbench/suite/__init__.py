"""Suites: load a YAML file, validate all of it at once into typed values, and plan it into runs.

- ``loading``: YAML (bounded, strict), includes, ``key=value`` overrides, the sweep grid;
- ``schema``: the typed sections (frozen dataclasses), their keys and defaults;
- ``sections`` and ``structure``: the one resolver of each section, which checks it into its type
  (a run's settings; the suite's teachers, chains, pairs, methods and excludes);
- ``identity``: what a run id hashes, and the one declared list of what it leaves out;
- ``teacher_files``: a teacher file's content hash, which stands in its students' ids for its location;
- ``spec``: ``RunSpec``, one run, shared with the store, the executors and training;
- ``planning``: ``plan()``, pure, on typed values only.

Loading reads the YAML and the bytes of any teacher file (a student's id holds its teacher file's
content hash: ``teacher_files``); planning touches no disk, so ``kdbench plan`` shows every run before any
compute is spent. Runs are content-addressed: two suites that need the same teacher share one run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.registry import unknown_name_message
from kdbench.suite.identity import LATER_DEFAULTS, LaterDefault, run_id_of
from kdbench.suite.loading import expand_sweeps, parse_overrides, resolve_includes, set_path
from kdbench.suite.planning import Plan, plan
from kdbench.suite.schema import (
    COMPILE_MODES,
    PRECISIONS,
    SCHEDULE_PRESETS,
    DatasetConfig,
    MethodConfig,
    Schedule,
    SuiteVariant,
    TeacherConfig,
    Training,
)
from kdbench.suite.sections import resolve_dataset, resolve_models, resolve_schedule, resolve_seeds, resolve_training
from kdbench.suite.spec import RunSpec
from kdbench.suite.structure import resolve_chains, resolve_excludes, resolve_methods, resolve_pairs, resolve_teachers
from kdbench.validation import Collector, Problem, ValidationError, describe

#: a suite's problems are validation problems like any other file's
SuiteError = ValidationError

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
    "teachers": "{model: {checkpoint: PATH} or {seed: N, schedule: {...}, method: NAME, <its parameters>}}",
    "models": "{model: {option: value}}: a family's own options (torchvision backbones: weights, trainable)",
    "teacher_checkpoints": "a folder of CRD-format teachers (<name>_vanilla/ckpt_epoch_240.pth) used by every teacher",
    "pairs": "list of [teacher, student], or {teacher, student, schedule: {...}, methods: {label: {...}}, "
    "self_distillation: true}",
    "methods": "{label: {use: method or [methods], <method>: {params}, ce_weight: x}}",
    "sweeps": "{key.path: [values, ...]}: a grid over any parameter",
    "excludes": "list of {pair: [t, s], method: label, seed: n}",
    "chains": "{label: {models: [teacher, assistant, ..., student], method: {use: kd} or [one per link]}}",
}
#: a suite name becomes a folder name: results/<name>/
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
SWEEPABLE = tuple(k for k in TOP_LEVEL_KEYS if k not in ("sweeps", "include", "name"))


@dataclass(frozen=True)
class Suite:
    """A loaded, validated suite: its name, what it reproduces, and each point of its sweep grid, typed."""

    source: str
    name: str
    reproduces: str | None
    document: dict  # after includes and overrides, before sweeps (for display)
    variants: tuple[SuiteVariant, ...]

    def teacher_files(self) -> dict[str, str | None]:
        """Every teacher file the suite loads (as written) -> the SHA-256 of its content, None where unknown
        (the file is not here and no results root recorded it)."""
        return {
            teacher.checkpoint: teacher.checkpoint_sha256
            for variant in self.variants
            for teacher in variant.teachers
            if teacher.checkpoint
        }


def load_suite(
    path: str | Path, overrides: Sequence[str] = (), recorded_teacher_files: Mapping[str, str] | None = None
) -> Suite:
    """Read, merge includes, apply ``key=value`` overrides, validate and type. Raises ``SuiteError``
    listing every problem (the file's and the command line's, each under its own source).

    Teacher files are hashed (their content is part of their students' ids); ``recorded_teacher_files``
    (path -> SHA-256, ``ResultStore.recorded_teacher_files``) stands in for those that are not here."""
    path = Path(path)
    source = str(path)
    document = resolve_includes(path)
    # shorthands become mappings first, so `dataset.root=...` or `schedule.epochs=2` refine them
    if isinstance(document.get("dataset"), str):
        document["dataset"] = {"name": document["dataset"]}
    if isinstance(document.get("schedule"), str):
        document["schedule"] = {"preset": document["schedule"]}
    file_labels = list(document.get("methods") or {}) if isinstance(document.get("methods"), dict) else []
    parsed = parse_overrides(overrides)
    for key, value in parsed:
        set_path(document, key, value)
    c = Collector()
    for key in ("name", "description", "reproduces", "teacher_checkpoints"):
        if document.get(key) is not None and not isinstance(document[key], str):
            c.add(key, f"expected a string, got {describe(document[key])}")
    name = document.get("name") if isinstance(document.get("name"), str) else path.stem
    if not SAFE_NAME.fullmatch(str(name)) or ".." in str(name):
        shown = repr(name) if len(str(name)) <= 80 else f"{str(name)[:60]!r}... ({len(str(name))} characters)"
        c.add(
            "name" if "name" in document else "(file name)",
            f"{shown} is not a safe name: results go to <results>/<name>/, so a name is 1-64 letters, digits, "
            "'.', '_', '-' or '+', starting with a letter or digit, without '..'",
        )
    elif str(name) == "runs":
        c.add(
            "name" if "name" in document else "(file name)",
            "'runs' is taken: <results>/runs/ holds the runs themselves",
        )
    # epochs cut on the command line (a quick try) leave the file's later milestones unreached on purpose
    # (only when the epochs are what the command line sets: a milestone set there is checked like any other)
    shortened = any(
        key.split(".")[-1] == "epochs" or (isinstance(value, dict) and "epochs" in value)
        for key, value in parsed
        if key.startswith(("schedule", "teachers.", "pairs"))
    )
    points = expand_sweeps(document, SWEEPABLE, c)
    variants = tuple(_variant(swept, variant, c, shortened, recorded_teacher_files) for swept, variant in points)
    # a quick try with fewer seeds, pairs or methods may leave an exclude of the file nothing to exclude
    narrowed = any(
        key.split(".")[0].split("[")[0] in ("seeds", "pairs", "methods", "teachers", "chains") for key, _ in parsed
    )
    if not c.problems and not narrowed:
        _check_excludes_match(variants, c)
    _blame_overrides(c, parsed, file_labels)
    c.raise_if_any(source)
    reproduces = document.get("reproduces")
    return Suite(source, str(name), reproduces, document, variants)


def _variant(
    swept: dict[str, Any],
    document: dict,
    c: Collector,
    shortened: bool,
    recorded_teacher_files: Mapping[str, str] | None,
) -> SuiteVariant:
    c.unknown_keys("", document, list(TOP_LEVEL_KEYS))
    dataset = resolve_dataset(document.get("dataset"), c)
    schedule = resolve_schedule(document.get("schedule"), c, "schedule", shortened)
    teachers = resolve_teachers(
        document.get("teachers"), document.get("teacher_checkpoints"), schedule, c, recorded_teacher_files
    )
    pairs = resolve_pairs(document.get("pairs"), teachers, schedule, document.get("methods"), c, shortened)
    variant = SuiteVariant(
        swept=swept,
        dataset=dataset or DatasetConfig("", ()),
        schedule=schedule,
        training=resolve_training(document.get("training"), c),
        seeds=resolve_seeds(document.get("seeds"), c),
        teachers=teachers,
        pairs=pairs.pairs,
        methods=resolve_methods(document.get("methods"), c),
        excludes=resolve_excludes(document.get("excludes"), c),
        pair_schedules=pairs.schedules,
        pair_methods=pairs.methods,
        model_options=resolve_models(document.get("models"), c),
        chains=resolve_chains(document.get("chains"), teachers, c),
    )
    if document.get("pairs") is None and not document.get("chains"):
        c.add(
            "pairs", "the suite has no pairs (and no chains): nothing would train; add pairs: [[teacher, student], ...]"
        )
    elif document.get("pairs") is not None and document.get("methods") is None:
        c.add(
            "methods", "the suite has pairs but no methods: add methods: {Vanilla: {use: vanilla}, KD: {use: kd}, ...}"
        )
    if not c.problems:
        _check_across_sections(variant, document, c)
    return variant


def _check_across_sections(variant: SuiteVariant, document: dict, c: Collector) -> None:
    """What no single section can know: unused teachers, excludes that match nothing, a parameter
    that makes its method inapplicable to every pair (a typo looks like 'does not apply' otherwise)."""
    from kdbench.methods import METHODS
    from kdbench.models import model_feature_info

    used = {teacher for teacher, _ in variant.pairs} | {chain.models[0] for chain in variant.chains}
    for teacher in variant.teachers:
        if teacher.name not in used and (variant.pairs or variant.chains):
            c.add(f"teachers.{teacher.name}", "declared but no pair uses it; add a pair with it or remove it")
    labels = [m.label for m in variant.methods]
    for i, exclude in enumerate(variant.excludes):
        if exclude.method is not None and exclude.method not in labels:
            c.add(f"excludes[{i}].method", unknown_name_message("method label", exclude.method, labels))
        if (
            exclude.teacher is not None
            and exclude.student is not None
            and (exclude.teacher, exclude.student) not in variant.pairs
        ):
            pairs = [f"[{t}, {s}]" for t, s in variant.pairs]
            c.add(
                f"excludes[{i}].pair",
                f"[{exclude.teacher}, {exclude.student}] is not a pair of the suite: {', '.join(pairs)}",
            )
    for method in variant.methods:
        for name, params in method.terms:
            cls = METHODS.get(name)
            defaults = cls.parameter_defaults()
            if params == defaults or not variant.pairs:
                continue
            infos = [(model_feature_info(t), model_feature_info(s)) for t, s in variant.pairs]
            reasons = [cls.not_applicable(t, s, params) for t, s in infos]
            if all(reasons) and not all(cls.not_applicable(t, s, defaults) for t, s in infos):
                c.add(f"methods.{method.label}", f"{reasons[0]} (with these parameters the method applies to no pair)")


def _check_excludes_match(variants: Sequence[SuiteVariant], c: Collector) -> None:
    """An exclude that leaves out no cell of any sweep point is a mistake (a seed or a student the suite
    does not have): say so rather than run what the user meant to leave out."""
    count = max((len(v.excludes) for v in variants), default=0)
    for i in range(count):
        matched = any(
            i < len(v.excludes) and v.excludes[i].matches(teacher, student, method.label, seed)
            for v in variants
            for teacher, student in v.pairs
            for method in v.methods_of(teacher, student)
            for seed in v.seeds
        )
        if not matched:
            v = variants[0]
            c.add(
                f"excludes[{i}]",
                f"matches no cell of the suite (pairs {', '.join(f'[{t}, {s}]' for t, s in v.pairs)}; "
                f"methods {', '.join(m.label for m in v.methods)}; seeds {list(v.seeds)}), so it leaves nothing out",
            )


def _blame_overrides(c: Collector, overrides: Sequence[tuple[str, Any]], file_labels: Sequence[str]) -> None:
    """Say which problems come from the command line, not the file, and catch a mistyped label there
    (``methods.KDD.kd.temperature=2`` when the suite has ``KD``: a new label, not an unknown method)."""
    for key, value in dict(overrides).items():  # a key set twice: the value that counts, noted once
        parts = key.split(".")
        if parts[0] == "methods" and len(parts) > 2 and parts[1] not in file_labels and file_labels:
            label = f"methods.{parts[1]}"
            c.problems = [p for p in c.problems if p.path != label and not p.path.startswith(f"{label}.")]
            c.add(key, f"{unknown_name_message('method label', parts[1], file_labels)} (set on the command line)")
            continue
        for i, problem in enumerate(c.problems):
            if (
                problem.path == key
                or problem.path.startswith((f"{key}.", f"{key}["))
                or key.startswith(f"{problem.path}.")
            ):
                c.problems[i] = Problem(problem.path, f"{problem.message} (set on the command line: {key}={value})")


__all__ = [
    "COMPILE_MODES",
    "LATER_DEFAULTS",
    "PRECISIONS",
    "SCHEDULE_PRESETS",
    "DatasetConfig",
    "LaterDefault",
    "MethodConfig",
    "Plan",
    "Problem",
    "RunSpec",
    "Schedule",
    "Suite",
    "SuiteError",
    "SuiteVariant",
    "TeacherConfig",
    "Training",
    "load_suite",
    "parse_overrides",
    "plan",
    "run_id_of",
]
