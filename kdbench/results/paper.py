"""Published numbers as data: load ``kdbench/results/papers/*.yaml``, validate them, and look cells up.

A paper file holds tables (``srkd/table1``, ``crd/table1``, ...) laid out as the paper prints them:
rows are method labels (the same labels suites use), columns are [teacher, student] pairs in model
registry names, one list of values per metric. The schema is described at the top of
``kdbench/results/papers/srkd.yaml``. A report aligns its own methods x pairs grid with ``PaperTable.frame()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from kdbench.registry import nearest_first
from kdbench.suite.loading import read_yaml_file
from kdbench.validation import Problem, ValidationError

#: the published numbers ship inside the package (and so inside the wheel), next to this module
PAPER_DIR = Path(__file__).resolve().parent / "papers"
METRICS = ("top1", "top5")
TABLE_KINDS = ("table", "curve")
NA = "NA"  # the paper prints NA: the method does not apply to the pair

# The CRD code's model names (RepDistiller models/__init__.py), accepted before the zoo registers them.
CRD_MODEL_NAMES = (
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4", "resnet32x4",
    "ResNet50", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "vgg8", "vgg11", "vgg13", "vgg16", "vgg19",
    "MobileNetV2", "ShuffleV1", "ShuffleV2",
)  # fmt: skip

_PAPER_KEYS = ("paper", "title", "citation", "source", "teachers", "tables")
_TABLE_KEYS = ("kind", "source", "caption", "dataset", "metrics", "pairs", "rows", "notes", "sweep", "protocol")
_PROTOCOL_KEYS = ("statistic", "runs", "epochs", "schedule", "augmentation", "notes", "rows")
#: which epoch a number is taken at: the last, the best test epoch, or one selected on a validation split
STATISTICS = ("last", "best", "selected")

Value = float | str | None  # a number, NA, or None (the paper prints nothing there)


def label_key(label: str) -> str:
    """How method labels are matched: case and spaces do not matter ('KD + SRKD' is 'kd+srkd')."""
    return "".join(str(label).lower().split())


def model_key(name: str) -> str:
    """How model names are matched: 'WRN-40-2', 'wrn_40_2' and 'Wrn40_2' are the same network."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


@dataclass(frozen=True)
class Protocol:
    """How a number was produced: which epoch, over how many runs, on which schedule.

    ``None`` means the source does not say. Published tables state theirs in a ``protocol:`` block;
    our cells get theirs from the runs (the report builds them).
    """

    statistic: str | None = None
    runs: int | None = None
    epochs: int | None = None
    schedule: str = ""
    augmentation: str = ""
    notes: str = ""

    def describe(self, *, runs_word: str = "run") -> str:
        """'last epoch, mean of 5 runs, 240 epochs (lr 0.05, /10 at 150, 180, 210)'."""
        statistic = {
            "last": "last epoch",
            "best": "best test epoch",
            "selected": "epoch selected on validation",
        }.get(self.statistic or "", "epoch not stated")
        if self.runs is None:
            runs = f"{runs_word}s not stated"
        else:
            runs = f"one {runs_word}" if self.runs == 1 else f"mean of {self.runs} {runs_word}s"
        epochs = f"{self.epochs} epochs" if self.epochs else "epochs not stated"
        if self.schedule:
            epochs += f" ({self.schedule})"
        return ", ".join([statistic, runs, epochs])

    def differences(self, other: Protocol) -> list[str]:
        """What makes ``other`` (a published protocol) not like ``self`` (ours); unknowns are not differences."""
        found = []
        if other.statistic and self.statistic and other.statistic != self.statistic:
            found.append(f"{self.statistic} vs {other.statistic} epoch")
        if other.epochs and self.epochs and other.epochs != self.epochs:
            found.append(f"{self.epochs} vs {other.epochs} epochs")
        if other.runs and self.runs and other.runs != self.runs:
            found.append(f"{self.runs} vs {other.runs} runs")
        return found


@dataclass(frozen=True, eq=False)
class PaperTable:
    """One published table (or a figure that publishes only a curve)."""

    id: str
    kind: str
    source: str
    caption: str
    dataset: str
    metrics: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    rows: dict[str, dict[str, tuple[Value, ...]]]
    notes: tuple[str, ...] = ()
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    #: the table's protocol (None: the paper file states none) and the rows whose protocol differs from it
    protocol: Protocol | None = None
    row_protocols: dict[str, Protocol] = field(default_factory=dict)
    _index: dict[tuple[str, str, str, str], Value] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        index = {
            (label_key(method), model_key(teacher), model_key(student), metric): value
            for method, by_metric in self.rows.items()
            for metric, values in by_metric.items()
            for (teacher, student), value in zip(self.pairs, values, strict=True)
        }
        object.__setattr__(self, "_index", index)

    @property
    def has_numbers(self) -> bool:
        return bool(self.rows)

    def protocol_of(self, method: str) -> Protocol | None:
        """The protocol of one row: its own where the paper file states one, else the table's."""
        return self.row_protocols.get(label_key(method), self.protocol)

    def value(self, method: str, teacher: str, student: str, metric: str = "top1") -> Value:
        """The paper's number for one cell: a float, ``NA``, or None when the table has no such cell."""
        return self._index.get((label_key(method), model_key(teacher), model_key(student), metric))

    def frame(self) -> pd.DataFrame:
        """Long form, one row per printed cell: method, teacher, student, metric, value, na."""
        records = [
            (method, teacher, student, metric, value)
            for method, by_metric in self.rows.items()
            for metric, values in by_metric.items()
            for (teacher, student), value in zip(self.pairs, values, strict=True)
            if value is not None
        ]
        frame = pd.DataFrame(records, columns=["method", "teacher", "student", "metric", "value"])
        frame["na"] = frame["value"].eq(NA)
        frame["value"] = pd.to_numeric(frame["value"].where(~frame["na"]), errors="coerce").astype(float)
        frame.insert(0, "table", self.id)
        return frame


@dataclass(frozen=True)
class Paper:
    """One paper file."""

    id: str
    title: str
    citation: str
    source: str
    teachers: dict[str, dict[str, float]]
    tables: dict[str, PaperTable]
    path: Path


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _unknown_keys(where: str, mapping: dict, allowed: tuple[str, ...]) -> list[str]:
    return [
        f"{where}: unknown key '{key}'; valid keys: {', '.join(nearest_first(str(key), allowed))}"
        for key in mapping
        if key not in allowed
    ]


def _model_errors(where: str, name: object) -> list[str]:
    from kdbench.models import MODELS

    if not isinstance(name, str):
        return [f"{where}: model name must be a string, got {name!r}"]
    if name in MODELS:
        canonical = MODELS.canonical(name)
        return [] if canonical == name else [f"{where}: write the registry name '{canonical}', not '{name}'"]
    if name in CRD_MODEL_NAMES:
        return []
    choices = sorted(set(MODELS.names()) | set(CRD_MODEL_NAMES))
    return [f"{where}: unknown model '{name}'; nearest: {', '.join(nearest_first(name, choices)[:5])}"]


def _parse_protocol(where: str, raw: object, errors: list[str], *, allow_rows: bool = True) -> Protocol | None:
    """A ``protocol:`` mapping: {statistic: last|best|selected|null, runs, epochs, schedule, augmentation, notes}."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        errors.append(f"{where}: a protocol must be a mapping with keys {', '.join(_PROTOCOL_KEYS)}, got {raw!r}")
        return None
    allowed = _PROTOCOL_KEYS if allow_rows else tuple(k for k in _PROTOCOL_KEYS if k != "rows")
    errors += _unknown_keys(where, raw, allowed)
    statistic = raw.get("statistic")
    if statistic is not None and statistic not in STATISTICS:
        choices = ", ".join(nearest_first(str(statistic), STATISTICS))
        errors.append(f"{where}.statistic: '{statistic}' is not one of {choices} (or null: not stated)")
        statistic = None
    counts: dict[str, int | None] = {}
    for key in ("runs", "epochs"):
        value = raw.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            errors.append(f"{where}.{key}: expected a positive integer or null (not stated), got {value!r}")
            value = None
        counts[key] = value
    texts = {}
    for key in ("schedule", "augmentation", "notes"):
        value = raw.get(key, "")
        if value is not None and not isinstance(value, str):
            errors.append(f"{where}.{key}: expected text, got {value!r}")
            value = ""
        texts[key] = value or ""
    return Protocol(statistic=statistic, runs=counts["runs"], epochs=counts["epochs"], **texts)


def _parse_table(where: str, table_id: str, raw: object, errors: list[str]) -> PaperTable | None:
    if not isinstance(raw, dict):
        errors.append(f"{where}: a table must be a mapping, got {type(raw).__name__}")
        return None
    errors += _unknown_keys(where, raw, _TABLE_KEYS)
    kind = raw.get("kind", "table")
    if kind not in TABLE_KINDS:
        errors.append(f"{where}.kind: '{kind}' is not one of {', '.join(TABLE_KINDS)}")
    metrics = raw.get("metrics", ["top1"])
    if not isinstance(metrics, list) or not metrics or any(m not in METRICS for m in metrics):
        errors.append(f"{where}.metrics: {metrics!r} must be a non-empty list of {', '.join(METRICS)}")
        metrics = [m for m in metrics if m in METRICS] if isinstance(metrics, list) else []

    pairs: list[tuple[str, str]] = []
    raw_pairs = raw.get("pairs")
    if not isinstance(raw_pairs, list) or not raw_pairs:
        errors.append(f"{where}.pairs: must be a non-empty list of [teacher, student], got {raw_pairs!r}")
        raw_pairs = []
    for index, pair in enumerate(raw_pairs):
        if not (isinstance(pair, list) and len(pair) == 2):
            errors.append(f"{where}.pairs[{index}]: must be [teacher, student], got {pair!r}")
            continue
        errors += _model_errors(f"{where}.pairs[{index}][0]", pair[0])
        errors += _model_errors(f"{where}.pairs[{index}][1]", pair[1])
        if (pair[0], pair[1]) in pairs:
            errors.append(f"{where}.pairs[{index}]: {pair!r} is listed twice")
        pairs.append((str(pair[0]), str(pair[1])))

    rows: dict[str, dict[str, tuple[Value, ...]]] = {}
    raw_rows = raw.get("rows", {})
    if not isinstance(raw_rows, dict):
        errors.append(f"{where}.rows: must be a mapping of method label -> {{metric: [values]}}")
        raw_rows = {}
    if kind == "table" and not raw_rows:
        errors.append(f"{where}.rows: a table of kind 'table' needs rows (use kind: curve for a figure)")
    seen_labels: dict[str, str] = {}
    for label, by_metric in raw_rows.items():
        row_where = f"{where}.rows.{label}"
        if label_key(label) in seen_labels:
            errors.append(f"{row_where}: the same label as '{seen_labels[label_key(label)]}' (case and spaces ignored)")
        seen_labels[label_key(label)] = str(label)
        if not isinstance(by_metric, dict) or not by_metric:
            errors.append(f"{row_where}: must be a mapping of metric -> [values], got {by_metric!r}")
            continue
        parsed: dict[str, tuple[Value, ...]] = {}
        for metric, values in by_metric.items():
            if metric not in metrics:
                errors.append(f"{row_where}.{metric}: not among the table's metrics ({', '.join(metrics)})")
                continue
            if not isinstance(values, list) or len(values) != len(pairs):
                count = len(values) if isinstance(values, list) else values
                errors.append(f"{row_where}.{metric}: needs one value per pair ({len(pairs)}), got {count!r}")
                continue
            for index, value in enumerate(values):
                if not (value is None or value == NA or (_is_number(value) and 0 <= value <= 100)):
                    errors.append(
                        f"{row_where}.{metric}[{index}]: {value!r} is not an accuracy in % (0..100), NA or null"
                    )
            parsed[metric] = tuple(float(v) if _is_number(v) else v for v in values)
        rows[str(label)] = parsed

    protocol = _parse_protocol(f"{where}.protocol", raw.get("protocol"), errors)
    row_protocols: dict[str, Protocol] = {}
    raw_row_protocols = (raw.get("protocol") or {}).get("rows") if isinstance(raw.get("protocol"), dict) else None
    if raw_row_protocols is not None and not isinstance(raw_row_protocols, dict):
        errors.append(f"{where}.protocol.rows: must be a mapping of row label -> protocol keys")
        raw_row_protocols = None
    for label, own in (raw_row_protocols or {}).items():
        row_where = f"{where}.protocol.rows.{label}"
        if label_key(label) not in seen_labels:
            choices = ", ".join(nearest_first(str(label), list(rows))[:5])
            errors.append(f"{row_where}: no row '{label}' in the table; rows: {choices}")
        if not isinstance(own, dict):
            errors.append(f"{row_where}: must be a mapping of protocol keys, got {own!r}")
            continue
        parsed_row = _parse_protocol(row_where, own, errors, allow_rows=False)
        if parsed_row is not None:
            # a row's protocol is the table's with the keys it states replaced
            stated = {key: getattr(parsed_row, key) for key in own if key in _PROTOCOL_KEYS}
            row_protocols[label_key(label)] = replace(protocol or Protocol(), **stated)

    notes = raw.get("notes", [])
    return PaperTable(
        id=table_id,
        kind=str(kind),
        source=str(raw.get("source", "")),
        caption=str(raw.get("caption", "")),
        dataset=str(raw.get("dataset", "")),
        metrics=tuple(metrics),
        pairs=tuple(pairs),
        rows=rows,
        notes=tuple(str(n) for n in notes) if isinstance(notes, list) else (str(notes),),
        sweep=dict(raw.get("sweep") or {}),
        protocol=protocol,
        row_protocols=row_protocols,
    )


def _teacher_errors(where: str, teachers: dict, tables: dict[str, PaperTable]) -> list[str]:
    """A table's Teacher row must agree with the paper's stated teacher accuracies."""
    errors = []
    for table in tables.values():
        stated = teachers.get(table.dataset, {})
        for row_label, by_metric in table.rows.items():
            if label_key(row_label) != "teacher" or "top1" not in by_metric:
                continue
            for (teacher, _), value in zip(table.pairs, by_metric["top1"], strict=True):
                if teacher in stated and _is_number(value) and value != stated[teacher]:
                    errors.append(
                        f"{where}: {table.id} Teacher {teacher} is {value} but teachers.{table.dataset}.{teacher} "
                        f"is {stated[teacher]}"
                    )
    return errors


def _as_problem(path: str, error: str) -> Problem:
    """'<file>: <key path>: <message>' (how the checks above word a problem) as a ``Problem``."""
    where, _, message = error.removeprefix(f"{path}: ").removeprefix(f"{path}").partition(": ")
    return Problem(where, message) if message else Problem("", where)


def load_paper(path: str | Path) -> Paper:
    """Load and validate one paper file; every problem is reported at once in one ``ValueError``."""
    path = Path(path)
    raw = read_yaml_file(path)  # the suites' bounded, strict reader: clean errors for any damaged file
    if not isinstance(raw, dict):
        raise ValidationError(str(path), [Problem("", f"a paper file is a mapping with keys {', '.join(_PAPER_KEYS)}")])

    errors = _unknown_keys(str(path), raw, _PAPER_KEYS)
    paper_id = raw.get("paper")
    if not isinstance(paper_id, str) or paper_id != path.stem:
        errors.append(f"{path}: paper: {paper_id!r} must be the file's name, '{path.stem}'")
        paper_id = path.stem

    teachers = raw.get("teachers") or {}
    if not isinstance(teachers, dict) or not all(isinstance(v, dict) for v in teachers.values()):
        errors.append(f"{path}: teachers: must be a mapping of dataset -> {{model: top1}}")
        teachers = {}
    for dataset, by_model in teachers.items():
        for model, value in by_model.items():
            errors += _model_errors(f"{path}: teachers.{dataset}", model)
            if not _is_number(value):
                errors.append(f"{path}: teachers.{dataset}.{model}: {value!r} is not a number")

    raw_tables = raw.get("tables")
    if not isinstance(raw_tables, dict) or not raw_tables:
        errors.append(f"{path}: tables: must be a non-empty mapping of table key -> table")
        raw_tables = {}
    tables = {}
    for key, raw_table in raw_tables.items():
        table = _parse_table(f"{path}: tables.{key}", f"{paper_id}/{key}", raw_table, errors)
        if table is not None:
            tables[str(key)] = table
    errors += _teacher_errors(str(path), teachers, tables)
    if errors:
        raise ValidationError(str(path), [_as_problem(str(path), error) for error in errors])
    return Paper(
        id=paper_id,
        title=str(raw.get("title", "")),
        citation=str(raw.get("citation", "")),
        source=str(raw.get("source", "")),
        teachers={str(d): {str(m): float(v) for m, v in by.items()} for d, by in teachers.items()},
        tables=tables,
        path=path,
    )


def available_papers(directory: str | Path | None = None) -> list[str]:
    """The paper ids in ``directory`` (default: the package's ``papers/``)."""
    return sorted(p.stem for p in Path(directory or PAPER_DIR).glob("*.yaml"))


@lru_cache(maxsize=32)
def _load_cached(path: Path, mtime: float) -> Paper:
    return load_paper(path)


def get_paper(paper_id: str, directory: str | Path | None = None) -> Paper:
    """The paper file ``<directory>/<paper_id>.yaml``, loaded once."""
    path = Path(directory or PAPER_DIR) / f"{paper_id}.yaml"
    if not path.is_file():
        choices = available_papers(directory)
        raise ValueError(
            f"Unknown paper '{paper_id}' (no {path}). Available: {', '.join(nearest_first(paper_id, choices))}"
        )
    return _load_cached(path, path.stat().st_mtime)


def resolve_tables(reference: str, directory: str | Path | None = None) -> list[PaperTable]:
    """'srkd/table1' is that table; a bare paper id ('crd') is all its tables that print numbers."""
    paper_id, _, key = reference.partition("/")
    paper = get_paper(paper_id, directory)
    if not key:
        return [table for table in paper.tables.values() if table.has_numbers]
    if key not in paper.tables:
        raise ValueError(
            f"Unknown table '{reference}' in {paper.path}. "
            f"Available: {', '.join(f'{paper_id}/{k}' for k in nearest_first(key, paper.tables))}"
        )
    return [paper.tables[key]]


def get_table(table_id: str, directory: str | Path | None = None) -> PaperTable:
    """One table by its id, e.g. 'srkd/table1'."""
    if "/" not in table_id:
        raise ValueError(f"'{table_id}' is not a table id; write '<paper>/<table>', e.g. 'srkd/table1'")
    return resolve_tables(table_id, directory)[0]


def paper_value(
    table_id: str, method: str, teacher: str, student: str, metric: str = "top1", directory: str | Path | None = None
) -> Value:
    """The paper's number for (table, method label, teacher, student, metric): float, ``NA`` or None."""
    if metric not in METRICS:
        raise ValueError(f"Unknown metric '{metric}'. Available: {', '.join(nearest_first(metric, METRICS))}")
    return get_table(table_id, directory).value(method, teacher, student, metric)
