"""Reports in the paper's layout: methods x pairs, ``mean ± std (n)`` over seeds, beside the paper's numbers.

Everything comes from one long-form frame (``kdbench.results.store.results_frame``: one row per planned
run and report cell) and is computed with pandas group-bys, so 10,000 runs render in well under a
second. ``build_report`` makes the cells once; Markdown, LaTeX and CSV are three renderings of them.

Layout: a table of our numbers (rows: Teacher, Vanilla, then the suite's methods in plan order;
columns: [teacher, student] pairs, and top-1/top-5 under each pair where the paper prints both), then,
for each paper table held against it, the same grid with the paper's number and, in brackets, ours
minus the paper's. Two grids rather than three sub-columns per pair: Table 1 alone would need 18.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kdbench.results.paper import METRICS, NA, PaperTable, get_table, label_key, model_key, resolve_tables

VALUES = ("last", "best")
FORMATS = ("markdown", "latex", "csv")
METRIC_NAMES = {"top1": "top-1", "top5": "top-5"}
TEACHER_ROW = "Teacher"
MISSING = "—"
# How runs that did not finish are summarised in a cell, most telling first.
UNFINISHED_STATES = ("failed", "interrupted", "running", "pending", "no value")
REQUIRED_COLUMNS = ("run_id", "kind", "teacher", "student", "method", "sweep", "seed", "status")
RUN_COLUMNS = (
    "run_id", "suite", "reproduces", "dataset", "kind", "teacher", "student", "method", "terms", "params", "sweep",
    "seed", "status", "na_reason", "failure", "top1_last", "top5_last", "top1_best", "top5_best", "test_loss_last",
    "epochs", "wall_time_s", "student_params", "student_flops", "teacher_top1",
)  # fmt: skip


def display_model(name: str | None) -> str:
    """The paper's spelling of a model ('WRN-40-2' for 'wrn_40_2'); unknown names are shown as given."""
    from kdbench.models import MODELS

    if name is None or (isinstance(name, float) and math.isnan(name)):
        return ""
    return MODELS.display(name) if name in MODELS else str(name)


def pair_label(teacher: str | None, student: str) -> str:
    teacher_name = display_model(teacher)
    return f"{teacher_name} -> {display_model(student)}" if teacher_name else display_model(student)


def _format_sweep_value(value: object) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def sweep_suffix(sweep: str, method: str = "") -> str:
    """'{"methods.SRKD.srkd.weight": 0.01}' -> ' (srkd.weight=0.01)': the extra row key of a sweep point."""
    points = json.loads(sweep) if isinstance(sweep, str) and sweep else {}
    if not points:
        return ""
    parts = []
    for key, value in points.items():
        key = str(key)
        prefix = f"methods.{method}."
        short = key[len(prefix) :] if method and key.startswith(prefix) else ".".join(key.split(".")[-2:])
        parts.append(f"{short}={_format_sweep_value(value)}")
    return f" ({', '.join(parts)})"


def _fmt(values: pd.Series, pattern: str = "{:.2f}") -> pd.Series:
    # Per cell, not per run: a report has at most a few hundred cells.
    return values.map(lambda v: "" if pd.isna(v) else pattern.format(v))


@dataclass
class Report:
    """One suite's cells, ready to render. ``cells`` has one row per (row label, pair, metric)."""

    suite: str
    dataset: str
    reproduces: str | None
    value: str
    metrics: tuple[str, ...]
    rows: list[str]  # teacher rows first
    teacher_rows: int
    columns: list[tuple[str | None, str, str]]  # (teacher, student, metric)
    cells: pd.DataFrame
    papers: list[PaperTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runs: int = 0

    # -- the grids -----------------------------------------------------------------------------------

    def column_headers(self) -> list[str]:
        several = len(self.metrics) > 1
        return [f"{pair_label(t, s)} {METRIC_NAMES[m]}" if several else pair_label(t, s) for t, s, m in self.columns]

    def grid(self, column: str) -> pd.DataFrame:
        """rows x columns of one cell field, in the report's order."""
        index = pd.MultiIndex.from_tuples(self.columns, names=["teacher", "student", "metric"])
        grid = self.cells.pivot(index="row", columns=["teacher", "student", "metric"], values=column)
        return grid.reindex(index=self.rows, columns=index)

    def ours_grid(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Cell texts and which of them are the best student of their column."""
        return self.grid("text"), self.grid("best").fillna(False).astype(bool)

    def paper_grid(self, table: PaperTable) -> pd.DataFrame:
        return self.grid(f"paper_text:{table.id}")

    def value_phrase(self) -> str:
        metrics = " and ".join(METRIC_NAMES[m] for m in self.metrics)
        return f"{metrics} accuracy (%) at the {'last' if self.value == 'last' else 'best'} epoch"

    # -- renderings ----------------------------------------------------------------------------------

    def to_markdown(self) -> str:
        from tabulate import tabulate

        def table(grid: pd.DataFrame, bold: pd.DataFrame | None) -> str:
            texts = grid.where(bold.to_numpy() == False, "**" + grid + "**") if bold is not None else grid  # noqa: E712
            rows = [[label, *values] for label, values in zip(self.rows, texts.to_numpy().tolist(), strict=True)]
            return tabulate(rows, headers=["Method", *self.column_headers()], tablefmt="github", disable_numparse=True)

        texts, best = self.ours_grid()
        lines = [f"# {self.suite}: {self.dataset}" + (f", reproducing {self.reproduces}" if self.reproduces else "")]
        lines += ["", f"## Ours: {self.value_phrase()}", "", self.legend(), "", table(texts, best)]
        for paper in self.papers:
            lines += ["", f"## Paper: {paper.id} ({paper.source}): {paper.caption}", ""]
            lines += [PAPER_LEGEND, "", table(self.paper_grid(paper), None)]
            lines += [""] + [f"- {note}" for note in paper.notes] if paper.notes else []
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        headers = [latex_escape(h) for h in self.column_headers()]
        texts, best = self.ours_grid()
        blocks = [
            "% kdbench report: " + latex_escape(self.suite) + "; needs \\usepackage{booktabs}",
            _latex_table(
                f"{self.suite}: {self.value_phrase()}. {self.legend()}",
                f"tab:{self.suite}-ours",
                self.rows,
                headers,
                texts,
                best,
                self.teacher_rows,
            ),
        ]
        for paper in self.papers:
            blocks.append(
                _latex_table(
                    f"{paper.id} ({paper.source}): {paper.caption}. {PAPER_LEGEND}",
                    f"tab:{self.suite}-{paper.id.replace('/', '-')}",
                    self.rows,
                    headers,
                    self.paper_grid(paper),
                    None,
                    self.teacher_rows,
                )
            )
        return "\n\n".join(blocks) + "\n"

    def to_csv(self) -> str:
        columns = ["row", "teacher", "student", "pair", "metric", "mean", "std", "n", "planned", "text", "best"]
        for paper in self.papers:
            columns += [f"paper:{paper.id}", f"delta:{paper.id}"]
        return self.cells[columns].to_csv(index=False, float_format="%.4f", lineterminator="\n")

    def render(self, fmt: str) -> str:
        if fmt not in FORMATS:
            raise ValueError(f"Unknown format '{fmt}'. Available: {', '.join(FORMATS)}")
        return {"markdown": self.to_markdown, "latex": self.to_latex, "csv": self.to_csv}[fmt]()

    def legend(self) -> str:
        return (
            "Each cell: mean ± std (n) over the seeds that finished; (k/n): k of n seeds finished. "
            f"Bold: the best student per column. NA: the method does not apply to the pair. {MISSING}: not run."
        )


PAPER_LEGEND = (
    "The paper's number; in brackets ours minus the paper's (our mean over finished seeds). "
    f"NA: not applicable. {MISSING}: the paper prints no number."
)

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}  # fmt: skip
_LATEX_SYMBOLS = {"±": r"$\pm$", "—": "--", "λ": r"$\lambda$", "→": r"$\to$", "−": "-"}


def latex_escape(text: str) -> str:
    """Plain text -> LaTeX: specials escaped, '->' as an arrow, and no non-ASCII left for the few symbols we emit."""
    escaped = "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))
    escaped = escaped.replace(" -> ", r" $\to$ ")
    for symbol, command in _LATEX_SYMBOLS.items():
        escaped = escaped.replace(symbol, command)
    # bold markers of the plain-text cells never reach here; '**' would be literal text
    return escaped


def _latex_table(
    caption: str,
    label: str,
    rows: Sequence[str],
    headers: Sequence[str],
    texts: pd.DataFrame,
    bold: pd.DataFrame | None,
    teacher_rows: int,
) -> str:
    body = []
    for index, (row_label, values) in enumerate(zip(rows, texts.to_numpy().tolist(), strict=True)):
        cells = [latex_escape(v) for v in values]
        if bold is not None:
            cells = [f"\\textbf{{{c}}}" if b else c for c, b in zip(cells, bold.iloc[index].tolist(), strict=True)]
        body.append(" & ".join([latex_escape(row_label), *cells]) + r" \\")
        if index == teacher_rows - 1 and index < len(rows) - 1:
            body.append(r"\midrule")
    size = r"\footnotesize" if len(headers) > 3 else r"\small"
    return "\n".join(
        [
            r"\begin{table}[htbp]",
            r"\centering",
            size,
            f"\\caption{{{latex_escape(caption)}}}",
            f"\\label{{{label.replace('_', '-')}}}",
            f"\\begin{{tabular}}{{l{'r' * len(headers)}}}",
            r"\toprule",
            " & ".join(["Method", *headers]) + r" \\",
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
        ]
    )


# -- building the cells ----------------------------------------------------------------------------


def _check_frame(frame: pd.DataFrame, value: str, metrics: Sequence[str]) -> None:
    if value not in VALUES:
        raise ValueError(f"Unknown value '{value}' for --metric. Available: {', '.join(VALUES)}")
    for metric in metrics:
        if metric not in METRICS:
            raise ValueError(f"Unknown metric '{metric}'. Available: {', '.join(METRICS)}")
    missing = [c for c in (*REQUIRED_COLUMNS, *(f"{m}_{value}" for m in metrics)) if c not in frame.columns]
    if missing:
        raise ValueError(f"The results frame lacks column(s) {', '.join(missing)}; it has {', '.join(frame.columns)}")
    if frame.empty:
        raise ValueError("No runs to report: the suite plans no runs")


def _first_value(frame: pd.DataFrame, column: str) -> str | None:
    if column not in frame.columns:
        return None
    values = frame[column].dropna()
    return str(values.iloc[0]) if len(values) else None


def row_labels(frame: pd.DataFrame) -> pd.Series:
    """Method label plus the sweep point, vectorised over the few distinct (method, sweep) combinations."""
    keys = frame[["method", "sweep"]].fillna({"sweep": "{}"}).astype(str)
    distinct = keys.drop_duplicates()
    labels = {(m, s): f"{m}{sweep_suffix(s, m)}" for m, s in distinct.itertuples(index=False)}
    return pd.Series([labels[k] for k in zip(keys["method"], keys["sweep"], strict=True)], index=frame.index)


def _row_order(assigned: pd.DataFrame) -> list[str]:
    """Teacher rows, then Vanilla, then the suite's methods in order of first appearance."""
    first = assigned.drop_duplicates("row")[["row", "is_teacher", "method", "terms"]].reset_index(drop=True)
    vanilla = first["method"].str.lower().eq("vanilla") | first["terms"].eq("vanilla")
    group = np.where(first["is_teacher"], 0, np.where(vanilla, 1, 2))
    first = first.assign(group=group, position=np.arange(len(first)))
    return first.sort_values(["group", "position"])["row"].tolist()


def _assign_to_pairs(frame: pd.DataFrame, metric_columns: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each run under the report column(s) it feeds: (runs by pair, the pairs in order)."""
    # teacher runs are the Teacher row whatever their method label
    frame = frame.assign(method=frame["method"].where(frame["kind"].ne("teacher"), TEACHER_ROW))
    frame = frame.assign(row=row_labels(frame), terms=frame["terms"] if "terms" in frame else "")
    keep = ["row", "method", "terms", "teacher", "student", "status", *metric_columns.values()]
    students = frame[frame["kind"].eq("student")]
    with_teacher = students[students["teacher"].notna()]
    pairs = with_teacher[["teacher", "student"]].drop_duplicates().reset_index(drop=True)
    parts = [with_teacher[keep].assign(is_teacher=False)]

    # A run without a teacher (Vanilla) feeds every pair with its student; alone, it is its own column.
    no_teacher = students[students["teacher"].isna()]
    if not no_teacher.empty:
        lone = no_teacher.loc[~no_teacher["student"].isin(pairs["student"]), ["student"]].drop_duplicates()
        pairs = pd.concat([pairs, lone.assign(teacher=None)[["teacher", "student"]]], ignore_index=True)
        broadcast = no_teacher[[c for c in keep if c != "teacher"]].merge(pairs, on="student")
        parts.append(broadcast[keep].assign(is_teacher=False))

    # Teacher runs feed every pair they teach; a teacher loaded from a checkpoint has no run, then the
    # measured accuracy its students recorded (teacher_top1) stands in, once per distinct value.
    teachers = frame[frame["kind"].eq("teacher")].drop(columns="teacher").rename(columns={"student": "teacher"})
    trained = teachers.merge(pairs, on="teacher")
    parts.append(trained[keep].assign(is_teacher=True))
    if "teacher_top1" in frame.columns:
        loaded = with_teacher[~with_teacher["teacher"].isin(teachers["teacher"]) & with_teacher["teacher_top1"].notna()]
        loaded = loaded.drop_duplicates(["teacher", "teacher_top1"])[["teacher", "teacher_top1"]]
        loaded = loaded.merge(pairs, on="teacher")
        if not loaded.empty:
            first_metric = metric_columns.get("top1")
            stand_in = pd.DataFrame(
                {
                    "row": TEACHER_ROW,
                    "method": TEACHER_ROW,
                    "terms": "",
                    "teacher": loaded["teacher"],
                    "student": loaded["student"],
                    "status": "done",
                    "is_teacher": True,
                    "stand_in": True,
                }
            )
            for column in metric_columns.values():
                stand_in[column] = loaded["teacher_top1"].to_numpy() if column == first_metric else np.nan
            parts.append(stand_in)
    assigned = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    assigned["stand_in"] = assigned["stand_in"].eq(True) if "stand_in" in assigned else False
    return assigned, pairs


def _aggregate(assigned: pd.DataFrame, metric_columns: dict[str, str]) -> pd.DataFrame:
    keys = ["row", "teacher", "student", "metric"]
    long = assigned.melt(
        id_vars=["row", "teacher", "student", "status", "stand_in"],
        value_vars=list(metric_columns.values()),
        var_name="metric",
        value_name="value",
    )
    # a stand-in teacher has only the top-1 its students measured: no other cell of its own
    long = long[~(long["stand_in"] & long["value"].isna())]
    long["metric"] = long["metric"].map({column: metric for metric, column in metric_columns.items()})
    long["teacher"] = long["teacher"].astype(object).where(long["teacher"].notna(), "")
    done = long["status"].eq("done") & long["value"].notna()
    long["state"] = np.where(done, "done", np.where(long["status"].eq("done"), "no value", long["status"]))
    long["done_value"] = long["value"].where(done)
    grouped = long.groupby(keys, sort=False)
    stats = grouped["done_value"].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    states = long.groupby([*keys, "state"], sort=False).size().unstack("state", fill_value=0)
    stats = stats.join(states)
    for state in ("done", "na", *UNFINISHED_STATES):
        if state not in stats.columns:
            stats[state] = 0
    stats["planned"] = stats[["done", *UNFINISHED_STATES]].sum(axis=1)
    return stats.reset_index()


def _cell_texts(cells: pd.DataFrame) -> pd.Series:
    n, planned = cells["n"].astype(int), cells["planned"].astype(int)
    count = np.where(n == planned, "(" + n.astype(str) + ")", "(" + n.astype(str) + "/" + planned.astype(str) + ")")
    spread = np.where(n >= 2, " ± " + _fmt(cells["std"]), "")
    finished = _fmt(cells["mean"]) + spread + " " + count
    unfinished = pd.Series("", index=cells.index)
    for state in UNFINISHED_STATES:
        part = np.where(cells[state] > 0, f"{state} " + cells[state].astype(str) + "/" + planned.astype(str), "")
        unfinished = unfinished.str.cat(pd.Series(part, index=cells.index), sep=", ").str.strip(", ")
    not_applicable = (cells["na"] > 0) | cells["paper_na"]
    return pd.Series(
        np.select([n > 0, planned > 0, not_applicable], [finished, unfinished, NA], MISSING), index=cells.index
    )


def build_report(
    frame: pd.DataFrame,
    *,
    against: Sequence[str] | None = None,
    value: str = "last",
    metrics: Sequence[str] | None = None,
    suite: str | None = None,
    reproduces: str | None = None,
    paper_dir: str | Path | None = None,
) -> Report:
    """The report of one suite's results frame.

    ``against``: paper tables to hold our numbers against (ids like 'srkd/table1', or a paper id such as
    'crd' for all its tables); default: the table the suite reproduces. ``value``: 'last' or 'best' epoch.
    ``metrics``: default the paper table's (top-1, and top-5 where it prints both), else top-1.
    """
    reproduces = reproduces or _first_value(frame, "reproduces")
    notes: list[str] = []
    references = list(against) if against else ([reproduces] if reproduces else [])
    papers: list[PaperTable] = []
    for reference in references:
        tables = resolve_tables(reference, paper_dir) if "/" not in reference else [get_table(reference, paper_dir)]
        for table in tables:
            if table.has_numbers:
                papers.append(table)
            else:
                notes.append(f"{table.id} ({table.source}) publishes only a curve, no numbers to compare with.")
    if metrics is None:
        metrics = tuple(dict.fromkeys(m for t in papers for m in t.metrics)) or ("top1",)
        if reproduces and not papers and "/" in reproduces:
            metrics = get_table(reproduces, paper_dir).metrics
    metrics = tuple(metrics)
    _check_frame(frame, value, metrics)
    metric_columns = {metric: f"{metric}_{value}" for metric in metrics}

    assigned, pairs = _assign_to_pairs(frame, metric_columns)
    rows = _row_order(assigned)
    stats = _aggregate(assigned, metric_columns)

    # The full grid, so a cell nobody ran still shows (as missing or NA), never as zero.
    pair_keys = pairs.assign(teacher=pairs["teacher"].astype(object).where(pairs["teacher"].notna(), ""))
    columns = [(t, s, m) for t, s in pair_keys.itertuples(index=False) for m in metrics]
    keys = ["row", "teacher", "student", "metric"]
    grid = pd.MultiIndex.from_tuples([(r, *c) for r in rows for c in columns], names=keys)
    cells = stats.set_index(keys).reindex(grid).reset_index()
    counts = ["n", "planned", "done", "na", *UNFINISHED_STATES]
    cells[counts] = cells[counts].fillna(0).astype(int)
    cells["pair"] = [pair_label(t or None, s) for t, s in zip(cells["teacher"], cells["student"], strict=True)]
    cells["label_key"] = cells["row"].map({r: label_key(r) for r in rows})
    cells["teacher_key"] = cells["teacher"].map(model_key)
    cells["student_key"] = cells["student"].map(model_key)

    cells["paper_na"] = False
    compared: list[PaperTable] = []
    for table in papers:
        published = table.frame().assign(
            label_key=lambda f: f["method"].map(label_key),
            teacher_key=lambda f: f["teacher"].map(model_key),
            student_key=lambda f: f["student"].map(model_key),
        )[["label_key", "teacher_key", "student_key", "metric", "value", "na"]]
        published = published.rename(columns={"value": "published", "na": "published_na"})
        cells = cells.merge(published, on=["label_key", "teacher_key", "student_key", "metric"], how="left")
        na = cells.pop("published_na").astype("boolean").fillna(False).astype(bool)
        paper = cells.pop("published")
        delta = cells["mean"] - paper
        if not (na.any() or paper.notna().any()):
            notes.append(f"{table.id} ({table.source}) has no cell in common with this suite.")
            continue
        # NA (not applicable) stays NA in the CSV too; pandas reads it back as missing
        cells[f"paper:{table.id}"] = np.where(na, NA, _fmt(paper))
        cells[f"delta:{table.id}"] = delta
        # rounded first, and -0.0 + 0.0 is +0.0: a zero delta never prints as -0.00
        with_delta = _fmt(paper) + np.where(delta.notna(), " (" + _fmt(delta.round(2) + 0.0, "{:+.2f}") + ")", "")
        cells[f"paper_text:{table.id}"] = np.select([na, paper.notna()], [NA, with_delta], MISSING)
        cells["paper_na"] |= na
        compared.append(table)

    cells["text"] = _cell_texts(cells)
    teacher_rows = [row for row in rows if row in set(assigned.loc[assigned["is_teacher"], "row"])]
    rounded = cells["mean"].round(2).where(~cells["row"].isin(teacher_rows) & (cells["n"] > 0))
    column_best = rounded.groupby([cells["teacher"], cells["student"], cells["metric"]]).transform("max")
    cells["best"] = rounded.notna() & rounded.eq(column_best)

    return Report(
        suite=suite or _first_value(frame, "suite") or "results",
        dataset=_first_value(frame, "dataset") or "",
        reproduces=reproduces,
        value=value,
        metrics=metrics,
        rows=rows,
        teacher_rows=len(teacher_rows),
        columns=columns,
        cells=cells,
        papers=compared,
        notes=notes,
        runs=int(frame["run_id"].nunique()),
    )


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The tidy CSV: one row per run. A run listed under several pairs (a Vanilla student serves every
    pair with its student) appears once, its teacher column empty, since it trained without one."""
    teachers_per_run = frame.groupby("run_id")["teacher"].nunique()
    runs = frame.drop_duplicates("run_id").copy()
    runs.loc[runs["run_id"].map(teachers_per_run).gt(1).to_numpy(), "teacher"] = None
    ordered = [c for c in RUN_COLUMNS if c in runs.columns]
    return runs[ordered + [c for c in runs.columns if c not in ordered]].reset_index(drop=True)


def write_report(report: Report, frame: pd.DataFrame, out: str | Path) -> dict[str, Path]:
    """report.md, report.tex, report.csv and runs.csv under ``out``; returns what was written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "markdown": out / "report.md",
        "latex": out / "report.tex",
        "csv": out / "report.csv",
        "runs": out / "runs.csv",
    }
    for fmt in FORMATS:
        written[fmt].write_text(report.render(fmt), encoding="utf-8")
    runs_table(frame).to_csv(written["runs"], index=False, lineterminator="\n")
    return written
