"""Suites: load a YAML file, validate all of it at once into typed values, and plan it into runs.

- ``loading``: YAML (bounded, strict), includes, ``key=value`` overrides, the sweep grid;
- ``schema``: the typed sections (frozen dataclasses) and the one resolver of each, which checks it;
- ``identity``: what a run id hashes, and the one declared list of what it leaves out;
- ``spec``: ``RunSpec``, one run, shared with the store, the executors and training;
- ``planning``: ``plan()``, pure, on typed values only.

Planning touches no disk besides reading the YAML, so ``kdbench plan`` shows every run before any
compute is spent. Runs are content-addressed: two suites that need the same teacher share one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    resolve_dataset,
    resolve_excludes,
    resolve_methods,
    resolve_pairs,
    resolve_schedule,
    resolve_seeds,
    resolve_teachers,
    resolve_training,
)
from kdbench.suite.spec import RunSpec
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
    "teachers": "{model: {checkpoint: PATH} or {seed: N, schedule: {...}}}",
    "teacher_checkpoints": "a folder of CRD-format teachers (<name>_vanilla/ckpt_epoch_240.pth) used by every teacher",
    "pairs": "list of [teacher, student]",
    "methods": "{label: {use: method or [methods], <method>: {params}, ce_weight: x}}",
    "sweeps": "{key.path: [values, ...]}: a grid over any parameter",
    "excludes": "list of {pair: [t, s], method: label, seed: n}",
}
SWEEPABLE = tuple(k for k in TOP_LEVEL_KEYS if k not in ("sweeps", "include", "name"))


@dataclass(frozen=True)
class Suite:
    """A loaded, validated suite: its name, what it reproduces, and each point of its sweep grid, typed."""

    source: str
    name: str
    reproduces: str | None
    document: dict  # after includes and overrides, before sweeps (for display)
    variants: tuple[SuiteVariant, ...]


def load_suite(path: str | Path, overrides: Sequence[str] = ()) -> Suite:
    """Read, merge includes, apply ``key=value`` overrides, validate and type. Raises ``SuiteError``
    listing every problem (the file's and the command line's, each under its own source)."""
    path = Path(path)
    source = str(path)
    document = resolve_includes(path)
    # shorthands become mappings first, so `dataset.root=...` or `schedule.epochs=2` refine them
    if isinstance(document.get("dataset"), str):
        document["dataset"] = {"name": document["dataset"]}
    if isinstance(document.get("schedule"), str):
        document["schedule"] = {"preset": document["schedule"]}
    for key, value in parse_overrides(overrides):
        set_path(document, key, value)
    c = Collector()
    for key in ("name", "description", "reproduces", "teacher_checkpoints"):
        if document.get(key) is not None and not isinstance(document[key], str):
            c.add(key, f"expected a string, got {describe(document[key])}")
    name = document.get("name") if isinstance(document.get("name"), str) else path.stem
    variants = tuple(_variant(swept, variant, c) for swept, variant in expand_sweeps(document, SWEEPABLE, c))
    c.raise_if_any(source)
    reproduces = document.get("reproduces")
    return Suite(source, str(name), reproduces, document, variants)


def _variant(swept: dict[str, Any], document: dict, c: Collector) -> SuiteVariant:
    c.unknown_keys("", document, list(TOP_LEVEL_KEYS))
    dataset = resolve_dataset(document.get("dataset"), c)
    schedule = resolve_schedule(document.get("schedule"), c, "schedule")
    teachers = resolve_teachers(document.get("teachers"), document.get("teacher_checkpoints"), schedule, c)
    return SuiteVariant(
        swept=swept,
        dataset=dataset or DatasetConfig("", ()),
        schedule=schedule,
        training=resolve_training(document.get("training"), c),
        seeds=resolve_seeds(document.get("seeds"), c),
        teachers=teachers,
        pairs=resolve_pairs(document.get("pairs"), teachers, c),
        methods=resolve_methods(document.get("methods"), c),
        excludes=resolve_excludes(document.get("excludes"), c),
    )


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
