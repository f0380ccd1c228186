"""``result.json``: the record a finished run leaves, one versioned structure, written and read here.

Other tools can read results without reading kdbench: ``result_json_schema()`` is a JSON Schema
(draft 2020-12) of the record, also kept as ``docs/result.schema.json`` (a test checks they agree).
A record's presence means "done"; one that does not parse, or misses a required field, is not done
(``ResultUnreadable``), so a damaged file is rebuilt or retrained instead of crashing a report.

Version history:
- 1: the fields below. Records written before the ``schema_version`` field existed have the required
  ones and are read as version 1; the per-class fields came later within the version (optional).
Fields may be added within a version (readers ignore what they do not know); a renamed or removed
field, or a changed meaning, is a new version with a reader for the old one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Field:
    name: str
    types: tuple[str, ...]  # JSON types
    description: str
    required: bool = True


#: every field of a version-1 record, in the order it is written
RESULT_FIELDS: tuple[Field, ...] = (
    Field("schema_version", ("integer",), "version of this structure (absent in the first records: 1)", False),
    Field("run_id", ("string",), "12 hex digits: the hash of the run's resolved config"),
    Field("status", ("string",), "always 'done'"),
    Field("spec", ("object",), "the resolved run config and its report cell (RunSpec.to_dict())"),
    Field("top1_last", ("number",), "test top-1 accuracy (%) after the last epoch"),
    Field("top5_last", ("number",), "test top-5 accuracy (%) after the last epoch"),
    Field("test_loss_last", ("number",), "test cross-entropy after the last epoch"),
    Field("top1_best", ("number",), "highest test top-1 over the main epochs (selection on the test set: say so)"),
    Field("top5_best", ("number",), "highest test top-5 over the main epochs"),
    Field("best_epoch", ("integer",), "epoch of top1_best (1-based)"),
    # the per-class view (every evaluation keeps a confusion matrix); absent in records of kdbench 0.1.0
    Field("class_names", ("array",), "the data set's class names, in label order", False),
    Field("top1_selected", ("number", "null"), "test top-1 at the epoch selected on the validation split", False),
    Field("top5_selected", ("number", "null"), "test top-5 at the selected epoch", False),
    Field("selected_epoch", ("integer", "null"), "the epoch chosen by schedule.selection (null without one)", False),
    Field("stopped_early", ("boolean",), "schedule.early_stopping ended the run before its last epoch", False),
    *(
        Field(f"{metric}_{epoch}", ("number", "null"), f"test {metric.replace('_', ' ')} at the {epoch} epoch", False)
        for metric in ("weighted_f1", "macro_f1")
        for epoch in ("last", "selected")
    ),
    *(
        Field(
            f"{metric}_{epoch}", ("array", "null"), f"test {metric.replace('_', ' ')} per class, {epoch} epoch", False
        )
        for metric in ("per_class_recall", "per_class_precision", "per_class_f1")
        for epoch in ("last", "selected")
    ),
    *(
        Field(
            f"confusion_{epoch}", ("array", "null"), f"test confusion matrix (rows: true class), {epoch} epoch", False
        )
        for epoch in ("last", "selected")
    ),
    Field("epochs", ("integer",), "main-stage epochs trained"),
    Field("init_epochs", ("integer",), "epochs of a method's init stage (FSP, AB, FT), before the main stage"),
    Field("wall_time_s", ("number",), "sum of the epochs' seconds, across resumes"),
    Field("student_params", ("integer",), "parameters of the trained network"),
    Field("student_flops", ("integer", "number"), "FLOPs of one forward pass of one image"),
    Field("teacher_top1", ("number", "null"), "the teacher's measured test top-1 (students only)"),
    Field("teacher_weights", ("string", "null"), "the teacher file the run loaded"),
    Field("teacher_sha256", ("string", "null"), "SHA-256 of that file"),
    Field("device", ("string",), "where it trained ('cpu', or the GPU's name)"),
    Field("torch_version", ("string",), "torch.__version__"),
    Field("kdbench_version", ("string",), "kdbench.__version__"),
    Field("python_version", ("string",), "platform.python_version()"),
    Field("git_commit", ("string", "null"), "the checkout's commit, where there is one"),
    Field("finished_at", ("string",), "UTC time, ISO 8601"),
    Field("process_seconds", ("number",), "wall time of the last process, set-up included"),
)
_BY_NAME = {f.name: f for f in RESULT_FIELDS}
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "object": (dict,),
    "array": (list,),
    "boolean": (bool,),
    "null": (type(None),),
}


class ResultUnreadable(ValueError):
    """A ``result.json`` that does not parse or does not have the structure: the run is not done."""


def _type_problems(record: Mapping[str, Any]) -> list[str]:
    problems = []
    for field in RESULT_FIELDS:
        if field.name not in record:
            if field.required:
                problems.append(f"missing '{field.name}'")
            continue
        value = record[field.name]
        allowed = tuple(t for name in field.types for t in _PYTHON_TYPES[name])
        if isinstance(value, bool) and "boolean" not in field.types or not isinstance(value, allowed):
            problems.append(f"'{field.name}' is {type(value).__name__}, expected {' or '.join(field.types)}")
    return problems


def make_result(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The record to write: ``fields`` checked against the schema, ``schema_version`` set, schema order first."""
    record = {"schema_version": RESULT_SCHEMA_VERSION, **fields}
    problems = _type_problems(record)
    if problems:
        raise TypeError(f"result record does not fit schema version {RESULT_SCHEMA_VERSION}: {'; '.join(problems)}")
    ordered = {f.name: record[f.name] for f in RESULT_FIELDS if f.name in record}
    return {**ordered, **{k: v for k, v in record.items() if k not in _BY_NAME}}


def read_result(path: Path) -> dict[str, Any] | None:
    """The record at ``path``; None when there is none; ``ResultUnreadable`` when it is damaged."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultUnreadable(f"{path}: not a complete JSON record ({error})") from None
    if not isinstance(record, dict):
        raise ResultUnreadable(f"{path}: expected a JSON object, found {type(record).__name__}")
    version = record.get("schema_version", 1)
    if version != RESULT_SCHEMA_VERSION:
        raise ResultUnreadable(f"{path}: schema version {version}; this kdbench reads {RESULT_SCHEMA_VERSION}")
    problems = _type_problems(record)
    if problems:
        raise ResultUnreadable(f"{path}: {'; '.join(problems)}")
    if record["status"] != "done":  # the writer writes 'done' only: anything else was not written by it
        raise ResultUnreadable(f"{path}: status is {record['status']!r}; a finished run's record says 'done'")
    return record


def result_json_schema() -> dict[str, Any]:
    """JSON Schema of a version-1 ``result.json``, for tools that read results without kdbench."""
    properties = {}
    for field in RESULT_FIELDS:
        types = list(field.types)
        properties[field.name] = {"type": types[0] if len(types) == 1 else types, "description": field.description}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/kdbench/kdbench/docs/result.schema.json",
        "title": f"kdbench result.json, schema version {RESULT_SCHEMA_VERSION}",
        "type": "object",
        "required": [f.name for f in RESULT_FIELDS if f.required],
        "properties": properties,
        "additionalProperties": True,
    }
