"""Reports in the paper's layout: methods x pairs, ``mean ± std (n)`` over seeds, beside the paper's numbers.

Everything comes from one long-form frame (``kdbench.results.store.results_frame``: one row per planned
run and report cell) and is computed with pandas group-bys, so 10,000 runs render in well under a
second. ``build_report`` makes the cells once; Markdown, LaTeX and CSV are three renderings of them.

Layout, in order (each section a method of ``Report``, so a new one is one more method and one line in
``sections``):

- a header saying how the report was made (kdbench version, results root, overrides, metric);
- ours: rows Teacher, Vanilla, then the suite's methods in plan order; columns the [teacher, student]
  pairs (top-1/top-5 under each pair where the paper prints both). Bold marks statistical ties with the
  highest mean of the column (a paired t-test over seeds, ``kdbench.results.stats``), not one winner;
- the paired differences of every method to a reference row (Vanilla unless asked otherwise), with the
  95% interval and the test's p-value;
- for each paper table held against the suite: the paper's number and, in brackets, ours minus it, each
  cell's protocol (which epoch, how many runs, how many epochs) and a warning where ours differs;
- for a suite that reproduces a table: the reproduction gap, (ours - published) with our interval, the
  cells the interval does not reach flagged, and a one-line summary.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kdbench.results.paper import (
    NA,
    STATISTICS,
    PaperTable,
    Protocol,
    get_table,
    label_key,
    model_key,
    resolve_tables,
)
from kdbench.results.stats import CONFIDENCE, TEST_NAME, summarize, t_quantile
from kdbench.results.store import atomic_write_bytes

VALUES = STATISTICS  # --metric last|best|selected; any other name is a stored metric (see resolve_metric)
FORMATS = ("markdown", "latex", "csv")
METRIC_NAMES = {"top1": "top-1", "top5": "top-5"}
TEACHER_ROW = "Teacher"
DEFAULT_REFERENCE_ROW = "Vanilla"
DEFAULT_ALPHA = 0.05
MISSING = "—"
NO_INTERVAL = "no interval (1 seed)"
# How runs that did not finish are summarised in a cell, most telling first.
UNFINISHED_STATES = ("failed", "blocked", "interrupted", "running", "pending", "no value")
REQUIRED_COLUMNS = ("run_id", "kind", "teacher", "student", "method", "sweep", "seed", "status")
RUN_COLUMNS = (
    "run_id", "suite", "reproduces", "dataset", "kind", "teacher", "student", "method", "terms", "params", "sweep",
    "seed", "status", "na_reason", "failure", "top1_last", "top5_last", "top1_best", "top5_best", "test_loss_last",
    "epochs", "wall_time_s", "student_params", "student_flops", "teacher_top1",
)  # fmt: skip
# frame columns that are numbers but not metrics a report can tabulate
_NOT_METRICS = {"seed", "epochs", "student_params", "student_flops", "wall_time_s", "teacher_top1", "init_epochs"}
_MARKS = "abcdefghijklmnopqrstuvwxyz"
_SUPERSCRIPT = dict(zip(_MARKS, "ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖ𐞥ʳˢᵗᵘᵛʷˣʸᶻ", strict=True))


def display_model(name: str | None) -> str:
    """The paper's spelling of a model ('WRN-40-2' for 'wrn_40_2'); unknown names are shown as given."""
    from kdbench.models import MODELS

    if name is None or (isinstance(name, float) and math.isnan(name)):
        return ""
    return MODELS.display(name) if name in MODELS else str(name)


def pair_label(teacher: str | None, student: str) -> str:
    teacher_name = display_model(teacher)
    return f"{teacher_name} -> {display_model(student)}" if teacher_name else display_model(student)


def metric_label(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def is_accuracy(metric: str) -> bool:
    """Accuracies are in % (0..100); other metrics (F1 in 0..1, a loss) are not."""
    return metric in METRIC_NAMES or metric.startswith(("top1", "top5")) or "recall" in metric


def lower_is_better(metric: str) -> bool:
    """A loss is better low; every other metric kdbench stores (accuracies, F1) is better high."""
    return "loss" in metric


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


def _signed(value: float) -> str:
    # rounded first, and -0.0 + 0.0 is +0.0: a zero never prints as -0.00
    return f"{round(value, 2) + 0.0:+.2f}"


def _p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


# -- how a report was made ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Provenance:
    """What a report records about itself: it goes into every file's header and decides the file names."""

    kdbench_version: str = ""
    results_root: str = ""
    overrides: tuple[str, ...] = ()
    metric: str = "last"
    against: tuple[str, ...] | None = None  # None: the suite's `reproduces`
    reference_row: str = DEFAULT_REFERENCE_ROW
    alpha: float = DEFAULT_ALPHA
    bootstrap: bool = False

    def lines(self, stored_metric: str, reproduces: str | None = None) -> list[str]:
        default = reproduces or "none (the suite reproduces no table)"
        against = default if self.against is None else (", ".join(self.against) or "none")
        return [
            f"kdbench {self.kdbench_version or '?'}; results root: {self.results_root or '?'}",
            f"overrides: {' '.join(self.overrides) if self.overrides else 'none'}",
            f"metric: {self.metric} (stored as {stored_metric}); compared with: {against}",
            f"paired against: {self.reference_row}; alpha: {self.alpha:g}; "
            f"bootstrap: {'yes' if self.bootstrap else 'no'}",
        ]

    def suffix(self) -> str:
        """'' for the default report; else what differs, e.g. '-best' or '-best_schedule.preset=crd'.

        Reports made with other overrides or metrics get other file names, so none overwrites another.
        """
        parts = [] if self.metric == "last" else [self.metric]
        parts += list(self.overrides)
        if self.against is not None:
            parts.append("against-" + ("+".join(self.against) or "none"))
        if self.reference_row != DEFAULT_REFERENCE_ROW:
            parts.append(f"vs-{self.reference_row}")
        if self.alpha != DEFAULT_ALPHA:
            parts.append(f"alpha-{self.alpha:g}")
        if self.bootstrap:
            parts.append("bootstrap")
        if not parts:
            return ""
        text = re.sub(r"[^A-Za-z0-9._=+-]+", "_", "_".join(parts)).strip("_")
        if len(text) > 60:
            digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]
            text = f"{text[:50].rstrip('_')}-{digest}"
        return f"-{text}"


# -- the report ----------------------------------------------------------------------------------------


@dataclass
class Report:
    """One suite's cells, ready to render. ``cells`` has one row per (row label, pair, metric)."""

    suite: str
    dataset: str
    reproduces: str | None
    value: str | None  # the statistic (last, best, selected), None for a metric without one
    metrics: tuple[str, ...]
    rows: list[str]  # teacher rows first
    teacher_rows: int
    columns: list[tuple[str | None, str, str]]  # (teacher, student, metric)
    cells: pd.DataFrame
    papers: list[PaperTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runs: int = 0
    metric_columns: dict[str, str] = field(default_factory=dict)
    reference_row: str | None = DEFAULT_REFERENCE_ROW
    alpha: float = DEFAULT_ALPHA
    bootstrap: bool = False
    provenance: Provenance | None = None
    #: protocol text -> footnote mark, for our cells and each paper table (table id -> {text: mark})
    protocol_marks: dict[str, str] = field(default_factory=dict)
    paper_protocol_marks: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    # -- the grids -----------------------------------------------------------------------------------

    def column_headers(self) -> list[str]:
        several = len(self.metrics) > 1
        return [f"{pair_label(t, s)} {metric_label(m)}" if several else pair_label(t, s) for t, s, m in self.columns]

    def grid(self, column: str) -> pd.DataFrame:
        """rows x columns of one cell field, in the report's order."""
        index = pd.MultiIndex.from_tuples(self.columns, names=["teacher", "student", "metric"])
        grid = self.cells.pivot(index="row", columns=["teacher", "student", "metric"], values=column)
        return grid.reindex(index=self.rows, columns=index)

    def ours_grid(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Cell texts and which of them are bold (tied with the highest mean of their column)."""
        return self.grid("text"), self.grid("bold").fillna(False).astype(bool)

    def paper_grid(self, table: PaperTable) -> pd.DataFrame:
        return self.grid(f"paper_text:{table.id}")

    def stored_metric(self) -> str:
        return ", ".join(self.metric_columns.values())

    def value_phrase(self) -> str:
        metrics = " and ".join(metric_label(m) for m in self.metrics)
        unit = " accuracy (%)" if all(is_accuracy(m) for m in self.metrics) else ""
        epoch = {"last": "the last epoch", "best": "the best test epoch", "selected": "the selected epoch"}
        return f"{metrics}{unit}" + (f" at {epoch[self.value]}" if self.value in epoch else "")

    def seeds_phrase(self) -> str:
        students = self.cells[~self.cells["is_teacher"] & (self.cells["n"] > 0)]
        counts = sorted(set(students["n"].astype(int)))
        if not counts:
            return "no finished seeds"
        spread = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        return f"over {spread} seed{'s' if counts[-1] > 1 else ''}"

    # -- sections (Markdown) ---------------------------------------------------------------------------

    def sections(self) -> list[tuple[str, list[str]]]:
        """(heading, Markdown lines) of every section, in order; empty sections are left out."""
        found = [
            ("Ours: " + self.value_phrase(), self._ours_lines()),
            (self._differences_heading(), self._differences_lines()),
        ]
        for paper in self.papers:
            found.append((f"Paper: {paper.id} ({paper.source}): {paper.caption}", self._paper_lines(paper)))
        found.append((self._gap_heading(), self._gap_lines()))
        found.append(("Notes", [f"- {note}" for note in self.notes]))
        return [(heading, lines) for heading, lines in found if lines]

    def _markdown_table(self, texts: pd.DataFrame, bold: pd.DataFrame | None, labels: Sequence[str]) -> str:
        from tabulate import tabulate

        if bold is not None:
            texts = texts.where(bold.to_numpy() == False, "**" + texts + "**")  # noqa: E712
        rows = [[label, *values] for label, values in zip(labels, texts.to_numpy().tolist(), strict=True)]
        return tabulate(rows, headers=["Method", *self.column_headers()], tablefmt="github", disable_numparse=True)

    def _ours_lines(self) -> list[str]:
        texts, bold = self.ours_grid()
        marks = self.grid("protocol_mark").fillna("")
        texts = texts + marks.map(lambda m: f" {_SUPERSCRIPT[m]}" if m else "")
        lines = [self.legend(), "", self._markdown_table(texts, bold, self.rows), ""]
        return lines + self._protocol_lines(self.protocol_marks, "Protocol")

    def _protocol_lines(self, marks: dict[str, str], word: str) -> list[str]:
        """The unmarked (most common) protocol first, then one line per footnote mark."""
        return [f"{_SUPERSCRIPT[mark]} {text}." if mark else f"{word}: {text}." for text, mark in marks.items()]

    def _differences_heading(self) -> str:
        return f"Paired differences to {self.reference_row}"

    def _differences_lines(self) -> list[str]:
        if self.reference_row is None or "diff_text" not in self.cells:
            return []
        texts = self.grid("diff_text").fillna("")
        keep = [row for row in self.rows[self.teacher_rows :] if row != self.reference_row]
        if not keep:
            return []
        texts = texts.loc[keep]
        legend = (
            f"Each cell: the mean over seeds of (method - {self.reference_row}) on the same seed, its "
            f"{CONFIDENCE:.0%} t interval [low, high] and the {TEST_NAME}'s p-value (n: seeds both finished). "
            f"The seeds pair the runs (same initial student, same batches), so the difference's own spread decides. "
            f"Why a t-test: with 3-5 seeds a rank test cannot reach p < 0.05 (its smallest p is 2/2^n); it assumes "
            f"independent seeds and normal differences. {NO_INTERVAL}: one common seed, no interval."
        )
        if self.bootstrap:
            legend += " Then: the percentile bootstrap interval over seeds (never used to decide a tie)."
        return [legend, "", self._markdown_table(texts, None, keep)]

    def _paper_lines(self, paper: PaperTable) -> list[str]:
        texts = self.paper_grid(paper)
        marks = self.paper_protocol_marks.get(paper.id, {})
        labels = list(self.rows)
        if marks:
            row_marks = self.cells.drop_duplicates("row").set_index("row")[f"paper_mark:{paper.id}"].fillna("")
            labels = [f"{row} {_SUPERSCRIPT[row_marks[row]]}" if row_marks.get(row) else row for row in self.rows]
        lines = [PAPER_LEGEND, "", self._markdown_table(texts, None, labels), ""]
        lines += self._protocol_lines(marks, "Published protocol") if marks else ["Published protocol: not stated."]
        lines += [f"- **Not like with like**: {w}" for w in self.warnings if w.startswith(paper.id)]
        lines += [f"- {note}" for note in paper.notes]
        return lines

    def reproduced_table(self) -> PaperTable | None:
        return next((p for p in self.papers if p.id == self.reproduces), None)

    def _gap_heading(self) -> str:
        return f"Reproduction gap: ours - {self.reproduces}"

    def gap_summary(self) -> str:
        table = self.reproduced_table()
        if table is None:
            return ""
        compared = self.cells[self.cells[f"delta:{table.id}"].notna()]
        with_interval = compared[compared["n"] >= 2]
        outside = int(compared[f"outside:{table.id}"].sum())
        one_seed = len(compared) - len(with_interval)
        text = (
            f"{outside} of {len(with_interval)} cells differ from the paper by more than our {CONFIDENCE:.0%} interval"
        )
        return text + (f"; {one_seed} more with one seed have no interval" if one_seed else "") + "."

    def _gap_lines(self) -> list[str]:
        table = self.reproduced_table()
        if table is None:
            return []
        texts = self.grid(f"gap_text:{table.id}").fillna("")
        legend = (
            f"Each cell: ours minus the published number, and in brackets the same for both ends of the "
            f"{CONFIDENCE:.0%} t interval of our mean; * the published number lies outside that interval. "
            f"{NO_INTERVAL}: one seed."
        )
        return [self.gap_summary(), "", legend, "", self._markdown_table(texts, None, self.rows)]

    # -- renderings ----------------------------------------------------------------------------------

    def header_lines(self) -> list[str]:
        if self.provenance is None:
            return []
        return self.provenance.lines(self.stored_metric(), self.reproduces)

    def to_markdown(self) -> str:
        lines = [f"# {self.suite}: {self.dataset}" + (f", reproducing {self.reproduces}" if self.reproduces else "")]
        header = self.header_lines()
        if header:
            lines += ["", "Made with " + "; ".join(header) + "."]
        for heading, body in self.sections():
            lines += ["", f"## {heading}", "", *body]
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        texts, bold = self.ours_grid()
        marks = self.grid("protocol_mark").fillna("")
        protocol = " ".join(
            (f"$^{{{mark}}}$ " if mark else "Protocol: ") + latex_escape(text) + "."
            for text, mark in self.protocol_marks.items()
        )
        blocks = [
            "\n".join(
                ["% kdbench report: " + latex_escape(self.suite) + "; needs \\usepackage{booktabs,graphicx}"]
                + [f"% {latex_escape(line)}" for line in self.header_lines()]
            ),
            _latex_table(
                latex_escape(f"{self.suite}: {self.value_phrase()}, {self.seeds_phrase()}. {self.legend()} ")
                + protocol,
                f"tab:{self.suite}-ours",
                self.rows,
                self.columns,
                [latex_escape(v) for v in texts.to_numpy().ravel()],
                bold.to_numpy().ravel().tolist(),
                marks.to_numpy().ravel().tolist(),
                self.teacher_rows,
                len(self.metrics) > 1,
            ),
        ]
        for paper in self.papers:
            paper_marks = self.paper_protocol_marks.get(paper.id, {})
            row_marks = self.cells.drop_duplicates("row").set_index("row")[f"paper_mark:{paper.id}"].fillna("")
            labels = [f"{row}$^{{{row_marks[row]}}}$" if row_marks.get(row) else row for row in self.rows]
            legend = " ".join(
                (f"$^{{{mark}}}$ " if mark else "Published protocol: ") + latex_escape(text) + "."
                for text, mark in paper_marks.items()
            )
            legend += "".join(
                " " + latex_escape(f"Not like with like: {w}").replace("`", "")
                for w in self.warnings
                if w.startswith(paper.id)
            )
            blocks.append(
                _latex_table(
                    latex_escape(f"{paper.id} ({paper.source}): {paper.caption}. {PAPER_LEGEND} ") + legend,
                    f"tab:{self.suite}-{paper.id.replace('/', '-')}",
                    labels,
                    self.columns,
                    [latex_escape(v) for v in self.paper_grid(paper).to_numpy().ravel()],
                    None,
                    None,
                    self.teacher_rows,
                    len(self.metrics) > 1,
                    escape_rows=False,
                )
            )
        blocks += self._latex_differences() + self._latex_gap()
        return "\n\n".join(blocks) + "\n"

    def _latex_differences(self) -> list[str]:
        if self.reference_row is None or "diff_text" not in self.cells:
            return []
        keep = [row for row in self.rows[self.teacher_rows :] if row != self.reference_row]
        if not keep:
            return []
        texts = self.grid("diff_text").fillna("").loc[keep]
        caption = (
            f"{self.suite}: paired differences to {self.reference_row} over common seeds, mean "
            f"[{CONFIDENCE:.0%} t interval] and the {TEST_NAME}'s p-value (n)."
        )
        return [self._latex_grid(caption, "differences", keep, texts, 0)]

    def _latex_gap(self) -> list[str]:
        table = self.reproduced_table()
        if table is None:
            return []
        texts = self.grid(f"gap_text:{table.id}").fillna("")
        caption = (
            f"{self.suite}: reproduction gap, ours - {table.id}, and the same for both ends of our mean's "
            f"{CONFIDENCE:.0%} t interval; * the published number lies outside it. {self.gap_summary()}"
        )
        return [self._latex_grid(caption, "gap", self.rows, texts, self.teacher_rows)]

    def _latex_grid(self, caption: str, name: str, rows: Sequence[str], texts: pd.DataFrame, teacher_rows: int) -> str:
        return _latex_table(
            latex_escape(caption),
            f"tab:{self.suite}-{name}",
            rows,
            self.columns,
            [latex_escape(v) for v in texts.to_numpy().ravel()],
            None,
            None,
            teacher_rows,
            len(self.metrics) > 1,
        )

    def to_csv(self) -> str:
        columns = ["row", "teacher", "student", "pair", "metric", "statistic", "stored_metric"]
        columns += [
            "mean",
            "std",
            "sem",
            "ci_low",
            "ci_high",
            "n",
            "planned",
            "text",
            "highest",
            "bold",
            "p_vs_highest",
        ]
        columns += ["protocol", "epochs", "schedule"]
        if "diff_text" in self.cells:
            columns += [f"{c}" for c in ("reference_row", "diff_n", "diff_mean", "diff_std", "diff_sem")]
            columns += ["diff_ci_low", "diff_ci_high", "diff_p"]
            if self.bootstrap:
                columns += ["diff_bootstrap_low", "diff_bootstrap_high"]
        for paper in self.papers:
            columns += [f"paper:{paper.id}", f"delta:{paper.id}", f"protocol:{paper.id}"]
            if paper.id == self.reproduces:
                columns += [f"delta_low:{paper.id}", f"delta_high:{paper.id}", f"outside:{paper.id}"]
        frame = self.cells.assign(
            statistic=self.value or "",
            stored_metric=self.cells["metric"].map(self.metric_columns),
            reference_row=self.reference_row or "",
        )
        if self.provenance is not None:
            frame = frame.assign(
                kdbench_version=self.provenance.kdbench_version,
                results_root=self.provenance.results_root,
                overrides=" ".join(self.provenance.overrides),
            )
            columns += ["kdbench_version", "results_root", "overrides"]
        return frame[columns].to_csv(index=False, float_format="%.4f", lineterminator="\n")

    def render(self, fmt: str) -> str:
        if fmt not in FORMATS:
            raise ValueError(f"Unknown format '{fmt}'. Available: {', '.join(FORMATS)}")
        return {"markdown": self.to_markdown, "latex": self.to_latex, "csv": self.to_csv}[fmt]()

    def legend(self) -> str:
        return (
            "Each cell: mean ± std (n) over the seeds that finished (std: the spread of one seed, not the "
            "standard error of the mean); (k/n): k of n seeds finished; with none finished, what they are: "
            "pending k/n: k of n seeds pending (likewise failed, blocked, running). "
            f"Bold: the highest mean of its column (the lowest for a loss) and every method tied with it, i.e. "
            f"whose paired difference "
            f"to it over common seeds is not significant ({TEST_NAME}, alpha {self.alpha:g}); a method with fewer "
            f"than 2 seeds in common with it is not tested and not bold. NA: the method does not apply to the pair. "
            f"{MISSING}: not run."
        )


PAPER_LEGEND = (
    "The paper's number; in brackets ours minus the paper's (our mean over finished seeds). "
    f"NA: not applicable. {MISSING}: the paper prints no number."
)

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}  # fmt: skip
# after ' -> ' became an arrow: a lone < or > would print as an inverted mark in LaTeX's default font encoding
_LATEX_SYMBOLS = {"±": r"$\pm$", "—": "--", "λ": r"$\lambda$", "→": r"$\to$", "−": "-", "<": r"$<$", ">": r"$>$"}


def latex_escape(text: str) -> str:
    """Plain text -> LaTeX: specials escaped, '->' as an arrow, and no non-ASCII left for the few symbols we emit."""
    escaped = "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))
    escaped = escaped.replace(" -> ", r" $\to$ ")
    for symbol, command in _LATEX_SYMBOLS.items():
        escaped = escaped.replace(symbol, command)
    # bold markers of the plain-text cells never reach here; '**' would be literal text
    return escaped


def _latex_header(teacher: str | None, student: str, metric: str, several_metrics: bool) -> str:
    """A narrow two- or three-line column header: teacher over student (over the metric)."""
    lines = (
        [latex_escape(display_model(teacher)), latex_escape(display_model(student))]
        if teacher
        else [latex_escape(display_model(student))]
    )
    if teacher:
        lines[1] = r"$\downarrow$ " + lines[1]
    if several_metrics:
        lines.append(latex_escape(metric_label(metric)))
    return r"\begin{tabular}[b]{@{}c@{}}" + r"\\".join(lines) + r"\end{tabular}"


def _latex_table(
    caption: str,
    label: str,
    rows: Sequence[str],
    columns: Sequence[tuple[str | None, str, str]],
    cells: Sequence[str],
    bold: Sequence[bool] | None,
    marks: Sequence[str] | None,
    teacher_rows: int,
    several_metrics: bool,
    *,
    escape_rows: bool = True,
) -> str:
    """One booktabs table, scaled down to the text width only when wider (never up); ``caption`` is LaTeX."""
    width = len(columns)
    body = []
    for index, row_label in enumerate(rows):
        values = list(cells[index * width : (index + 1) * width])
        if bold is not None:
            flags = bold[index * width : (index + 1) * width]
            values = [f"\\textbf{{{c}}}" if b else c for c, b in zip(values, flags, strict=True)]
        if marks is not None:
            row_marks = marks[index * width : (index + 1) * width]
            values = [f"{c}$^{{{m}}}$" if m else c for c, m in zip(values, row_marks, strict=True)]
        label_text = latex_escape(row_label) if escape_rows else _escape_keeping_marks(row_label)
        body.append(" & ".join([label_text, *values]) + r" \\")
        if index == teacher_rows - 1 and index < len(rows) - 1:
            body.append(r"\midrule")
    headers = [_latex_header(t or None, s, m, several_metrics) for t, s, m in columns]
    return "\n".join(
        [
            r"\begin{table}[htbp]",
            r"\centering",
            r"\footnotesize" if width > 3 else r"\small",
            f"\\caption{{{caption}}}",
            f"\\label{{{label.replace('_', '-')}}}",
            r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
            f"\\begin{{tabular}}{{l{'r' * width}}}",
            r"\toprule",
            " & ".join(["Method", *headers]) + r" \\",
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}}",
            r"\end{table}",
        ]
    )


def _escape_keeping_marks(text: str) -> str:
    """A row label that may end in a footnote mark '$^{a}$' we added ourselves."""
    match = re.fullmatch(r"(.*?)(\$\^\{[a-z]\}\$)?", text, flags=re.S)
    assert match is not None
    return latex_escape(match.group(1)) + (match.group(2) or "")


# -- which metric ------------------------------------------------------------------------------------


def available_metrics(frame: pd.DataFrame) -> list[str]:
    """What ``--metric`` accepts for this frame: the statistics, then every stored numeric metric column."""
    numeric = [
        c
        for c in frame.columns
        if c not in _NOT_METRICS and c not in REQUIRED_COLUMNS and pd.api.types.is_numeric_dtype(frame[c])
    ]
    return [*STATISTICS, *numeric]


def resolve_metric(
    frame: pd.DataFrame, name: str, default_metrics: Sequence[str]
) -> tuple[str | None, tuple[str, ...], dict[str, str]]:
    """``--metric NAME`` -> (statistic, metrics, {metric: frame column}).

    NAME is a statistic (last, best, selected: the paper table's accuracies at that epoch), a stored
    column ``<metric>_<statistic>`` (top1_last, weighted_f1_selected), a metric whose last-epoch value is
    stored (weighted_f1 -> weighted_f1_last), or any other stored number (best_epoch).
    """
    from kdbench.registry import nearest_first

    columns = set(frame.columns)

    def unknown(what: str) -> ValueError:
        choices = ", ".join(nearest_first(name, available_metrics(frame)))
        return ValueError(f"Unknown metric '{name}' for --metric: {what}. The stored metrics of these runs: {choices}")

    if name in STATISTICS:
        wanted = {metric: f"{metric}_{name}" for metric in default_metrics}
        missing = [c for c in wanted.values() if c not in columns]
        if missing:
            raise unknown(f"the runs store no {', '.join(missing)}")
        return name, tuple(default_metrics), wanted
    if name in columns and name not in _NOT_METRICS and name not in REQUIRED_COLUMNS:
        base, _, statistic = name.rpartition("_")
        if base and statistic in STATISTICS:
            return statistic, (base,), {base: name}
        return None, (name,), {name: name}
    if f"{name}_last" in columns:
        return "last", (name,), {name: f"{name}_last"}
    raise unknown("no such column in the results")


# -- building the cells ----------------------------------------------------------------------------


def _check_frame(frame: pd.DataFrame, metric_columns: dict[str, str]) -> None:
    missing = [c for c in (*REQUIRED_COLUMNS, *metric_columns.values()) if c not in frame.columns]
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


def schedule_text(schedule: object) -> str:
    """A run's schedule in words: its preset's name when it is one exactly, else its main numbers."""
    if not isinstance(schedule, str) or not schedule:
        return ""
    values = json.loads(schedule)
    try:
        from kdbench.suite import SCHEDULE_PRESETS
    except ImportError:  # the suite package mid-change must not break a report
        SCHEDULE_PRESETS = {}
    for name, preset in SCHEDULE_PRESETS.items():
        if values == preset:
            return f"schedule {name}"
    parts = []
    if "lr" in values:
        parts.append(f"lr {values['lr']:g}")
    if values.get("milestones"):
        parts.append(
            "/" + format(1 / values.get("lr_decay", 0.1), "g") + " at " + ", ".join(map(str, values["milestones"]))
        )
    if "batch_size" in values:
        parts.append(f"batch {values['batch_size']}")
    return "custom schedule: " + ", ".join(parts) if parts else "custom schedule"


def _assign_to_pairs(frame: pd.DataFrame, metric_columns: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each run under the report column(s) it feeds: (runs by pair, the pairs in order)."""
    # teacher runs are the Teacher row whatever their method label
    frame = frame.assign(method=frame["method"].where(frame["kind"].ne("teacher"), TEACHER_ROW))
    frame = frame.assign(row=row_labels(frame), terms=frame["terms"] if "terms" in frame else "")
    # the epochs a run was planned for (its schedule), else the epochs it recorded
    planned_epochs = frame["schedule"].map(_schedule_epochs) if "schedule" in frame else pd.Series(np.nan, frame.index)
    if "epochs" in frame:
        planned_epochs = planned_epochs.fillna(pd.to_numeric(frame["epochs"], errors="coerce"))
    frame = frame.assign(
        planned_epochs=planned_epochs,
        schedule=frame["schedule"] if "schedule" in frame else "",
    )
    keep = ["row", "method", "terms", "teacher", "student", "status", "seed", "planned_epochs", "schedule"]
    keep += list(dict.fromkeys(metric_columns.values()))
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
                    "seed": 0,
                    "planned_epochs": np.nan,
                    "schedule": "",
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


def _schedule_epochs(schedule: object) -> float:
    if not isinstance(schedule, str) or not schedule:
        return np.nan
    return float(json.loads(schedule).get("epochs", np.nan))


def _long_values(assigned: pd.DataFrame, metric_columns: dict[str, str]) -> pd.DataFrame:
    """One row per (run under a column, metric): its value where it finished, and its state."""
    ids = ["row", "teacher", "student", "status", "stand_in", "is_teacher", "seed", "planned_epochs", "schedule"]
    parts = [
        assigned[ids].assign(metric=metric, value=assigned[column].to_numpy())
        for metric, column in metric_columns.items()
    ]
    long = pd.concat(parts, ignore_index=True)
    # a stand-in teacher has only the top-1 its students measured: no other cell of its own
    long = long[~(long["stand_in"] & long["value"].isna())]
    long["teacher"] = long["teacher"].astype(object).where(long["teacher"].notna(), "")
    done = long["status"].eq("done") & long["value"].notna()
    long["state"] = np.where(done, "done", np.where(long["status"].eq("done"), "no value", long["status"]))
    long["done_value"] = long["value"].where(done)
    return long


def _interval_half(cells: pd.DataFrame) -> pd.Series:
    quantiles = cells["n"].map(lambda n: t_quantile(0.5 + CONFIDENCE / 2, n - 1) if n >= 2 else np.nan)
    return quantiles * cells["sem"]


def _aggregate(long: pd.DataFrame) -> pd.DataFrame:
    keys = ["row", "teacher", "student", "metric"]
    grouped = long.groupby(keys, sort=False)
    stats = grouped["done_value"].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    # the protocol of a cell is its runs' plan (schedule), known before any of them finished
    planned = long[long["state"].ne("na")]
    stats = stats.join(planned.groupby(keys, sort=False)["planned_epochs"].agg(lambda e: e.dropna().max()))
    stats = stats.join(planned.groupby(keys, sort=False)["schedule"].agg(lambda s: schedule_text(s.iloc[0])))
    stats = stats.join(planned.groupby(keys, sort=False)["stand_in"].any())
    states = long.groupby([*keys, "state"], sort=False).size().unstack("state", fill_value=0)
    stats = stats.join(states)
    for state in ("done", "na", *UNFINISHED_STATES):
        if state not in stats.columns:
            stats[state] = 0
    stats["planned"] = stats[["done", *UNFINISHED_STATES]].sum(axis=1)
    stats = stats.reset_index()
    stats["sem"] = stats["std"] / np.sqrt(stats["n"].where(stats["n"] > 0))
    half = _interval_half(stats)
    stats["ci_low"], stats["ci_high"] = stats["mean"] - half, stats["mean"] + half
    return stats


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


def _seed_values(long: pd.DataFrame) -> pd.DataFrame:
    """Finished student values, (teacher, student, metric, seed) x row: what the paired statistics read."""
    done = long[long["state"].eq("done") & ~long["is_teacher"]]
    return done.pivot_table(
        index=["teacher", "student", "metric", "seed"], columns="row", values="value", aggfunc="mean", sort=False
    )


def _paired(
    wide: pd.DataFrame, rows: Sequence[str], against: dict[tuple[str, str, str], str], bootstrap: bool
) -> dict[tuple[str, str, str, str], object]:
    """Summary of (row - against[column]) over common seeds, per (row, teacher, student, metric)."""
    found = {}
    for column, by_seed in wide.groupby(level=[0, 1, 2], sort=False):
        other = against.get(column)
        if other is None or other not in by_seed:
            continue
        for row in rows:
            if row not in by_seed or row == other:
                continue
            differences = (by_seed[row] - by_seed[other]).dropna()
            if len(differences):
                found[(row, *column)] = summarize(differences.tolist(), bootstrap=bootstrap)
    return found


def _difference_text(summary) -> str:
    if summary is None:
        return MISSING
    if summary.n < 2:
        return f"{_signed(summary.mean)}, {NO_INTERVAL}"
    text = (
        f"{_signed(summary.mean)} [{_signed(summary.low)}, {_signed(summary.high)}] {_p_text(summary.p)} ({summary.n})"
    )
    if not math.isnan(summary.bootstrap_low):
        text += f"; bootstrap [{_signed(summary.bootstrap_low)}, {_signed(summary.bootstrap_high)}]"
    return text


def _our_protocol(statistic: str | None, epochs: float, schedule: str) -> str:
    epoch_word = {"last": "last epoch", "best": "best test epoch", "selected": "epoch selected on validation"}
    parts = [epoch_word.get(statistic or "", "stored value"), "mean of the seeds in brackets"]
    if not (isinstance(epochs, float) and math.isnan(epochs)):
        parts.append(f"{int(epochs)} epochs")
    if schedule:
        parts.append(schedule)
    return ", ".join(parts)


def footnote_marks(protocols: Sequence[str]) -> dict[str, str]:
    """Protocol text -> footnote mark: '' for the most common one (stated once), a, b, ... for the others."""
    counts: dict[str, int] = {}
    for text in protocols:
        counts[text] = counts.get(text, 0) + 1
    if not counts:
        return {}
    main = max(counts, key=lambda text: counts[text])  # the first of the most common
    others = [text for text in counts if text != main]
    return {main: "", **{text: _MARKS[i % len(_MARKS)] for i, text in enumerate(others)}}


LOADED_TEACHER = "a teacher checkpoint, top-1 measured by its students' runs"


def _protocols_of_ours(cells: pd.DataFrame, statistic: str | None) -> dict[str, str]:
    stand_in = cells["stand_in"].astype("boolean").fillna(False).astype(bool)
    texts = [
        (LOADED_TEACHER if loaded else _our_protocol(statistic, e, s)) if planned > 0 else ""
        for e, s, planned, loaded in zip(
            cells["planned_epochs"], cells["schedule"].fillna(""), cells["planned"], stand_in, strict=True
        )
    ]
    cells["protocol"] = texts
    marks = footnote_marks([t for t in texts if t])
    cells["protocol_mark"] = [marks.get(t, "") for t in texts]
    return marks


def _like_with_like(table: PaperTable, cells: pd.DataFrame, statistic: str | None, has_number: pd.Series) -> list[str]:
    """One warning per published protocol of ``table`` whose cells we compare with under another protocol."""
    students = cells[has_number & ~cells["is_teacher"] & (cells["planned"] > 0)]
    if students.empty:
        return []
    epochs = students["planned_epochs"].dropna()
    ours = Protocol(
        statistic=statistic,
        runs=int(students["planned"].max()),
        epochs=int(epochs.mode().iloc[0]) if len(epochs) else None,
    )
    warnings = []
    by_protocol: dict[Protocol, list[str]] = {}
    for row in dict.fromkeys(students["row"]):
        published = table.protocol_of(row)
        if published is not None:
            by_protocol.setdefault(published, []).append(row)
    for published, rows in by_protocol.items():
        differences = ours.differences(published)
        if not differences:
            continue
        hints = []
        if published.statistic and statistic and published.statistic != statistic:
            hints.append(f"`--metric {published.statistic}`")
        if ours.epochs is None:
            pass
        elif published.epochs == 240 and ours.epochs != 240:
            hints.append("`schedule.preset=crd` (the CRD code's 240 epochs)")
        elif published.epochs and ours.epochs != published.epochs:
            hints.append(f"`schedule.epochs={published.epochs}`")
        warnings.append(
            f"{table.id} rows {', '.join(rows)}: ours {', '.join(differences)} published"
            + (f"; like with like: {' and '.join(hints)}" if hints else "")
            + "."
        )
    return warnings


def build_report(
    frame: pd.DataFrame,
    *,
    against: Sequence[str] | None = None,
    value: str = "last",
    metric: str | None = None,
    metrics: Sequence[str] | None = None,
    suite: str | None = None,
    reproduces: str | None = None,
    paper_dir: str | Path | None = None,
    reference_row: str | None = None,
    alpha: float = DEFAULT_ALPHA,
    bootstrap: bool = False,
    provenance: Provenance | None = None,
) -> Report:
    """The report of one suite's results frame.

    ``against``: paper tables to hold our numbers against (ids like 'srkd/table1', or a paper id such as
    'crd' for all its tables); default: the table the suite reproduces. ``metric`` (or its older name
    ``value``): 'last', 'best', 'selected' or a stored metric (see ``resolve_metric``). ``metrics``: default
    the paper table's (top-1, and top-5 where it prints both), else top-1. ``reference_row``: the row
    paired differences are taken to (default Vanilla; an explicit row that does not exist is an error).
    ``alpha``: the level below which a paired difference to the column's highest mean is significant.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"--alpha must be between 0 and 1, got {alpha}")
    reproduces = reproduces or _first_value(frame, "reproduces")
    notes: list[str] = []
    references = list(against) if against is not None else ([reproduces] if reproduces else [])
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
    statistic, metrics, metric_columns = resolve_metric(frame, metric or value, tuple(metrics))
    _check_frame(frame, metric_columns)

    assigned, pairs = _assign_to_pairs(frame, metric_columns)
    rows = _row_order(assigned)
    long = _long_values(assigned, metric_columns)
    from kdbench.results.subclass_ordering import ordering_notes  # the subclass suites' claim (issue 15)

    notes += ordering_notes(long)
    stats = _aggregate(long)

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
    teacher_rows = [row for row in rows if row in set(assigned.loc[assigned["is_teacher"], "row"])]
    cells["is_teacher"] = cells["row"].isin(teacher_rows)
    cells["epochs"] = cells["planned_epochs"]
    protocol_marks = _protocols_of_ours(cells, statistic)

    cells["paper_na"] = False
    compared: list[PaperTable] = []
    paper_marks: dict[str, dict[str, str]] = {}
    warnings: list[str] = []
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
        with_delta = _fmt(paper) + np.where(delta.notna(), " (" + _fmt(delta.round(2) + 0.0, "{:+.2f}") + ")", "")
        cells[f"paper_text:{table.id}"] = np.select([na, paper.notna()], [NA, with_delta], MISSING)
        cells["paper_na"] |= na
        # each row's published protocol, a footnote mark per distinct one
        row_protocols = {row: table.protocol_of(row) for row in rows}
        texts = {row: p.describe() for row, p in row_protocols.items() if p is not None}
        printed = set(cells.loc[paper.notna() | na, "row"])
        paper_marks[table.id] = footnote_marks([texts[row] for row in rows if row in texts and row in printed])
        cells[f"protocol:{table.id}"] = cells["row"].map(texts).where(paper.notna() | na, "")
        cells[f"paper_mark:{table.id}"] = cells[f"protocol:{table.id}"].map(paper_marks[table.id]).fillna("")
        # the reproduction gap: ours - published, with our interval shifted the same way
        low, high = cells["ci_low"] - paper, cells["ci_high"] - paper
        cells[f"delta_low:{table.id}"], cells[f"delta_high:{table.id}"] = low, high
        outside = delta.notna() & low.notna() & ((low > 0) | (high < 0))
        cells[f"outside:{table.id}"] = outside
        gap = [
            ""
            if pd.isna(d)
            else (f"{_signed(d)}, {NO_INTERVAL}" if pd.isna(lo) else f"{_signed(d)} [{_signed(lo)}, {_signed(hi)}]")
            + (" *" if out else "")
            for d, lo, hi, out in zip(delta, low, high, outside, strict=True)
        ]
        cells[f"gap_text:{table.id}"] = gap
        warnings += _like_with_like(table, cells, statistic, paper.notna())
        compared.append(table)

    cells["text"] = _cell_texts(cells)

    # ties: bold the highest mean of each column and every row whose paired difference to it is not significant
    wide = _seed_values(long)
    student_rows = [row for row in rows if row not in teacher_rows]
    # "highest" is the best: for a loss, the lowest (the sign flipped)
    better = np.where(cells["metric"].map(lower_is_better), -1.0, 1.0)
    rounded = (cells["mean"].round(2) * better).where(~cells["is_teacher"] & (cells["n"] > 0))
    column_max = rounded.groupby([cells["teacher"], cells["student"], cells["metric"]]).transform("max")
    cells["highest"] = rounded.notna() & rounded.eq(column_max)
    tops = cells[cells["highest"]].drop_duplicates(["teacher", "student", "metric"])
    top_of = {(t, s, m): r for r, t, s, m in tops[["row", "teacher", "student", "metric"]].itertuples(index=False)}
    versus_top = _paired(wide, student_rows, top_of, bootstrap=False)
    p_vs_top = [
        getattr(versus_top.get((r, t, s, m)), "p", np.nan)
        for r, t, s, m in cells[["row", "teacher", "student", "metric"]].itertuples(index=False)
    ]
    cells["p_vs_highest"] = p_vs_top
    tested = [
        getattr(versus_top.get((r, t, s, m)), "n", 0) >= 2
        for r, t, s, m in cells[["row", "teacher", "student", "metric"]].itertuples(index=False)
    ]
    cells["bold"] = cells["highest"] | (pd.Series(tested, index=cells.index) & cells["p_vs_highest"].ge(alpha))

    # paired differences to the reference row
    explicit = reference_row is not None
    reference = reference_row or DEFAULT_REFERENCE_ROW
    if reference not in student_rows:
        if explicit:
            from kdbench.registry import nearest_first

            choices = ", ".join(nearest_first(reference, student_rows))
            raise ValueError(f"--against-row: no row '{reference}' among the suite's students; rows: {choices}")
        notes.append(f"No {reference} row: no paired differences (choose a row with --against-row).")
        reference = None
    if reference is not None:
        column_keys = {(t, s, m): reference for t, s, m in columns}
        differences = _paired(wide, student_rows, column_keys, bootstrap=bootstrap)
        found = [
            differences.get((r, t, s, m))
            for r, t, s, m in cells[["row", "teacher", "student", "metric"]].itertuples(index=False)
        ]
        cells["diff_text"] = [
            "reference" if r == reference else _difference_text(f) for r, f in zip(cells["row"], found, strict=True)
        ]
        nan = float("nan")
        for name in ("n", "mean", "std", "sem", "low", "high", "p", "bootstrap_low", "bootstrap_high"):
            target = {"low": "diff_ci_low", "high": "diff_ci_high"}.get(name, f"diff_{name}")
            cells[target] = [getattr(f, name) if f is not None else (0 if name == "n" else nan) for f in found]

    return Report(
        suite=suite or _first_value(frame, "suite") or "results",
        dataset=_first_value(frame, "dataset") or "",
        reproduces=reproduces,
        value=statistic,
        metrics=metrics,
        rows=rows,
        teacher_rows=len(teacher_rows),
        columns=columns,
        cells=cells,
        papers=compared,
        notes=notes,
        runs=int(frame["run_id"].nunique()),
        metric_columns=metric_columns,
        reference_row=reference,
        alpha=alpha,
        bootstrap=bootstrap,
        provenance=provenance,
        protocol_marks=protocol_marks,
        paper_protocol_marks=paper_marks,
        warnings=warnings,
    )


def runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The tidy CSV: one row per run. A run listed under several pairs (a Vanilla student serves every
    pair with its student) appears once, its teacher column empty, since it trained without one."""
    teachers_per_run = frame.groupby("run_id")["teacher"].nunique()
    runs = frame.drop_duplicates("run_id").copy()
    runs.loc[runs["run_id"].map(teachers_per_run).gt(1).to_numpy(), "teacher"] = None
    ordered = [c for c in RUN_COLUMNS if c in runs.columns]
    return runs[ordered + [c for c in runs.columns if c not in ordered]].reset_index(drop=True)


def report_paths(out: str | Path, suffix: str = "", name: str | None = None) -> dict[str, Path]:
    """Where a report's files go: report<suffix>.md/.tex/.csv, runs<suffix>.csv, plots<suffix>/ under ``out``;
    with a ``name``: NAME.md, NAME.tex, NAME.csv, NAME-runs.csv, NAME-plots/."""
    out = Path(out)
    if name is not None:
        return {
            "markdown": out / f"{name}.md",
            "latex": out / f"{name}.tex",
            "csv": out / f"{name}.csv",
            "runs": out / f"{name}-runs.csv",
            "plots": out / f"{name}-plots",
        }
    return {
        "markdown": out / f"report{suffix}.md",
        "latex": out / f"report{suffix}.tex",
        "csv": out / f"report{suffix}.csv",
        "runs": out / f"runs{suffix}.csv",
        "plots": out / f"plots{suffix}",
    }


def write_report(report: Report, frame: pd.DataFrame, out: str | Path, *, name: str | None = None) -> dict[str, Path]:
    """The report's files under ``out``, named by its provenance (``Provenance.suffix``) or ``name``.

    Returns every path, the plots directory too (as ``plots``; the plots are written by ``plots.plot_all``).
    """
    suffix = report.provenance.suffix() if report.provenance is not None else ""
    paths = report_paths(out, suffix, name)
    for fmt in FORMATS:  # each file whole or not at all: a full disk leaves the old one, not half a new one
        atomic_write_bytes(paths[fmt], report.render(fmt).encode("utf-8"))
    atomic_write_bytes(paths["runs"], runs_table(frame).to_csv(index=False, lineterminator="\n").encode("utf-8"))
    return paths
