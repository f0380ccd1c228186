"""Figures of a suite's results with seaborn (Agg backend), each written as PNG and PDF under ``<out>/plots/``.

- ``sweep-<key>``: accuracy against a swept parameter (Fig. 7: lambda), log x, one line per pair, error bars
  = std over seeds.
- ``methods``: one bar per method and pair with std error bars (Table 4's stage ablation, or any table).
- ``curves``: per-epoch test loss and top-1 (Figs. 4 and 5: Vanilla, KD, SRKD for each teacher), mean over
  seeds with a std band, lr steps marked as vertical lines; read from each run's ``metrics.jsonl``.
- ``delta-<paper table>``: a methods x pairs heatmap of ours minus the paper's.

Only the plots the data support are drawn; ``PlotSummary.skipped`` says why the others were not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kdbench.results.report import METRIC_NAMES, Report, pair_label, row_labels

# The methods of the paper's Figs. 4 and 5; other suites show all their methods (up to CURVE_METHODS_MAX).
CURVE_METHODS = ("Vanilla", "KD", "SRKD")
CURVE_METHODS_MAX = 6
CURVE_COLUMNS = ("run_id", "epoch", "phase", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5")


@dataclass
class PlotSummary:
    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def curves_frame(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """One row per (run, epoch) from each run directory's ``metrics.jsonl``; run_id is the directory name.

    Runs without the file contribute nothing; a torn last line (a run killed mid-write) is skipped.
    """
    records = []
    for run_dir in map(Path, run_dirs):
        path = run_dir / "metrics.jsonl"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            records.append({"run_id": run_dir.name, **{k: record.get(k) for k in CURVE_COLUMNS[1:]}})
    frame = pd.DataFrame.from_records(records, columns=list(CURVE_COLUMNS))
    numeric = [c for c in CURVE_COLUMNS if c not in {"run_id", "phase"}]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    return frame


def _curve_labels(labels: Iterable[str]) -> list[str]:
    labels = list(dict.fromkeys(labels))
    return [label for label in labels if label in CURVE_METHODS] or labels[:CURVE_METHODS_MAX]


def curve_runs(frame: pd.DataFrame) -> list[str]:
    """The run ids whose per-epoch metrics the curves plot shows: read only those ``metrics.jsonl`` files."""
    students = frame[frame["kind"].eq("student") & ~frame["status"].isin(["na", "pending"])]
    labels = row_labels(students)
    return list(dict.fromkeys(students.loc[labels.isin(_curve_labels(labels)), "run_id"]))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, plots_dir: Path, name: str, summary: PlotSummary) -> None:
    plt = _pyplot()
    plots_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("png", "pdf"):
        path = plots_dir / f"{name}.{suffix}"
        # fixed metadata keeps the PDF byte-identical across runs of the same data
        metadata = {"CreationDate": None} if suffix == "pdf" else {"Software": None}
        figure.savefig(path, dpi=150, bbox_inches="tight", metadata=metadata)
        summary.written.append(path)
    plt.close(figure)


def _finished_students(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    students = frame[frame["kind"].eq("student") & frame["status"].eq("done") & frame[column].notna()]
    return students.assign(
        row=row_labels(students),
        pair=_pair_labels(students),
    )


def _pair_labels(frame: pd.DataFrame) -> list[str]:
    teachers = frame["teacher"].astype(object).where(frame["teacher"].notna(), None)
    return [pair_label(t, s) for t, s in zip(teachers, frame["student"], strict=True)]


def plot_sweeps(frame: pd.DataFrame, column: str, plots_dir: Path, summary: PlotSummary) -> None:
    """Accuracy against each numeric swept key (Fig. 7), one line per pair, error bars = std over seeds."""
    import seaborn as sns

    done = _finished_students(frame, column)
    points = done["sweep"].fillna("{}").map(json.loads)
    keys = list(dict.fromkeys(k for point in points for k in point))
    if not keys:
        summary.skipped["sweep"] = "the suite sweeps no parameter"
        return
    plt = _pyplot()
    for key in keys:
        values = pd.to_numeric(points.map(lambda p, key=key: p.get(key)), errors="coerce")
        data = done.assign(x=values)[values.notna()]
        name = f"sweep-{key.replace('.', '-').replace('+', '')}"
        if data["x"].nunique() < 2:
            summary.skipped[name] = f"fewer than two finished numeric values of {key}"
            continue
        figure, axis = plt.subplots(figsize=(6, 4))
        sns.lineplot(
            data=data, x="x", y=column, hue="pair", style="method" if data["method"].nunique() > 1 else None,
            errorbar="sd", err_style="bars", marker="o", ax=axis,
        )  # fmt: skip
        if (data["x"] > 0).all() and data["x"].max() / data["x"].min() >= 10:
            axis.set_xscale("log")
        axis.set_xlabel(key.removeprefix("methods."))
        axis.set_ylabel(_accuracy_label(column))
        axis.set_title(f"{_suite(frame)}: accuracy against {'.'.join(key.split('.')[-2:])}")
        _save(figure, plots_dir, name, summary)


def plot_methods(frame: pd.DataFrame, column: str, plots_dir: Path, summary: PlotSummary) -> None:
    """Bars: each method's mean over seeds per pair, std error bars (the stage ablation of Table 4)."""
    import seaborn as sns

    done = _finished_students(frame, column)
    if done.empty:
        summary.skipped["methods"] = "no finished student runs"
        return
    plt = _pyplot()
    order = list(dict.fromkeys(done["row"]))
    pairs = list(dict.fromkeys(done["pair"]))
    grid = sns.catplot(
        data=done, kind="bar", x="row", y=column, col="pair", col_order=pairs, order=order, errorbar="sd",
        col_wrap=min(3, len(pairs)), height=3.5, aspect=max(1.0, len(order) / 5), sharey=False, capsize=0.2,
    )  # fmt: skip
    for axis in grid.axes.flat:
        axis.tick_params(axis="x", labelbottom=True)
        plt.setp(axis.get_xticklabels(), rotation=40, ha="right", rotation_mode="anchor")
        low = done[column].min()
        axis.set_ylim(bottom=max(0.0, np.floor(low - 2)))
    grid.set_axis_labels("", _accuracy_label(column))
    grid.set_titles("{col_name}")
    _save(grid.figure, plots_dir, "methods", summary)


def plot_curves(frame: pd.DataFrame, curves: pd.DataFrame | None, plots_dir: Path, summary: PlotSummary) -> None:
    """Per-epoch test loss and top-1 for each pair (Figs. 4 and 5), lr steps as vertical lines."""
    import seaborn as sns

    if curves is None or curves.empty:
        summary.skipped["curves"] = "no per-epoch metrics (metrics.jsonl) found for the suite's runs"
        return
    students = frame[frame["kind"].eq("student")]
    runs = students.assign(row=row_labels(students))[["run_id", "row", "teacher", "student"]]
    data = curves.merge(runs, on="run_id")
    if "phase" in data and data["phase"].notna().any():
        data = data[data["phase"].fillna("main").eq("main")]
    if data.empty:
        summary.skipped["curves"] = "no per-epoch metrics for student runs"
        return
    chosen = _curve_labels(data["row"])
    data = data[data["row"].isin(chosen)]
    data = data.assign(pair=_pair_labels(data))
    long = data.melt(
        id_vars=["run_id", "row", "pair", "epoch", "lr"], value_vars=["test_loss", "test_top1"], var_name="measure"
    )
    pairs = list(dict.fromkeys(data["pair"]))
    grid = sns.relplot(
        data=long, kind="line", x="epoch", y="value", hue="row", hue_order=chosen, row="measure",
        col="pair", col_order=pairs, errorbar="sd", height=3, aspect=1.3, facet_kws={"sharey": "row"},
    )  # fmt: skip
    # the lr steps: epochs where the learning rate differs from the epoch before
    schedule = data.groupby("epoch")["lr"].first().sort_index()
    steps = schedule.index[1:][schedule.to_numpy()[1:] != schedule.to_numpy()[:-1]]
    for axis in grid.axes.flat:
        for epoch in steps:
            axis.axvline(epoch - 0.5, color="grey", linestyle="--", linewidth=0.8)
    grid.set_titles("{col_name}")
    for (measure, _), axis in grid.axes_dict.items():
        axis.set_ylabel("test loss" if measure == "test_loss" else "test top-1 (%)")
        if measure != "test_loss":
            axis.set_title("")
    grid.legend.set_title("")
    _save(grid.figure, plots_dir, "curves", summary)


def plot_deltas(report: Report, plots_dir: Path, summary: PlotSummary) -> None:
    """Ours minus the paper's, methods x pairs, one heatmap per paper table held against the suite."""
    import seaborn as sns

    if not report.papers:
        summary.skipped["delta"] = "no paper table with numbers to compare with"
        return
    plt = _pyplot()
    headers = report.column_headers()
    for paper in report.papers:
        name = f"delta-{paper.id.replace('/', '-')}"
        grid = report.grid(f"delta:{paper.id}").astype(float)
        grid.columns = headers
        grid = grid.dropna(how="all").dropna(axis=1, how="all")
        if grid.empty:
            summary.skipped[name] = f"no cell has both our number and {paper.id}'s"
            continue
        limit = max(float(np.nanmax(np.abs(grid.to_numpy()))), 0.5)
        with sns.axes_style("white"):
            figure, axis = plt.subplots(figsize=(1.6 + 1.3 * grid.shape[1], 0.9 + 0.45 * grid.shape[0]))
        sns.heatmap(
            grid, annot=True, fmt="+.2f", cmap="RdBu", center=0, vmin=-limit, vmax=limit, linewidths=0.5,
            cbar_kws={"label": "ours - paper (points)"}, ax=axis,
        )  # fmt: skip
        axis.set_xticklabels(axis.get_xticklabels(), rotation=30, ha="right")
        axis.set_yticklabels(axis.get_yticklabels(), rotation=0)
        axis.set_title(f"{report.suite} vs {paper.id}: {' and '.join(METRIC_NAMES[m] for m in report.metrics)}")
        axis.set_ylabel("")
        _save(figure, plots_dir, name, summary)


def _accuracy_label(column: str) -> str:
    metric, _, value = column.partition("_")
    return f"{METRIC_NAMES.get(metric, metric)} (%), {value} epoch"


def _suite(frame: pd.DataFrame) -> str:
    values = frame["suite"].dropna() if "suite" in frame else pd.Series(dtype=object)
    return str(values.iloc[0]) if len(values) else "results"


def plot_all(frame: pd.DataFrame, report: Report, out: str | Path, curves: pd.DataFrame | None = None) -> PlotSummary:
    """Every plot the data support, under ``<out>/plots/``."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    plots_dir = Path(out) / "plots"
    summary = PlotSummary()
    column = f"top1_{report.value}"
    plot_sweeps(frame, column, plots_dir, summary)
    plot_methods(frame, column, plots_dir, summary)
    plot_curves(frame, curves, plots_dir, summary)
    plot_deltas(report, plots_dir, summary)
    return summary
