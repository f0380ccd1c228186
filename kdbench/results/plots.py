"""Figures of a suite's results with seaborn (Agg backend), each written as PNG and PDF under ``<out>/plots/``.

- ``sweep-<key>``: the report's metric against a swept parameter (Fig. 7: lambda), log x where the
  values spread over a decade or more, one line per pair, error bars = std over seeds.
- ``methods``: one bar per method and pair with std error bars (Table 4's stage ablation, or any
  table); the teacher as a dashed line, the y axis never beyond 100% for accuracies.
- ``curves``: per-epoch test loss and top-1 of every student row (Figs. 4 and 5 show Vanilla, KD and
  SRKD), mean over seeds with a shaded std band, the lr steps as dashed lines; integer epoch ticks;
  read from each run's ``metrics.jsonl``.
- ``delta-<paper table>``: a methods x pairs heatmap of ours minus the paper's.

Every title says what is plotted and over how many seeds. Only the plots the data support are drawn;
``PlotSummary.skipped`` says why the others were not. A new plot is a function ``(frame, report,
curves, plots_dir, summary)`` appended to ``PLOTS``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kdbench.results.report import Report, is_accuracy, metric_label, pair_label, row_labels

CURVE_COLUMNS = ("run_id", "epoch", "phase", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5")
# Students whose runs can have curves: not those that never started or do not apply.
_NO_CURVES = ("na", "pending", "blocked")


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


def curve_runs(frame: pd.DataFrame) -> list[str]:
    """The run ids whose per-epoch metrics the curves plot shows (every student row's started runs)."""
    students = frame[frame["kind"].eq("student") & ~frame["status"].isin(_NO_CURVES)]
    return list(dict.fromkeys(students["run_id"]))


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
    return students.assign(row=row_labels(students), pair=_pair_labels(students))


def _pair_labels(frame: pd.DataFrame) -> list[str]:
    teachers = frame["teacher"].astype(object).where(frame["teacher"].notna(), None)
    return [pair_label(t, s) for t, s in zip(teachers, frame["student"], strict=True)]


def _seeds_phrase(data: pd.DataFrame) -> str:
    """'3 seeds' or '1-3 seeds': how many seeds each plotted point is a mean of."""
    keys = [c for c in ("row", "pair", "x") if c in data.columns]
    counts = data.groupby(keys)["seed"].nunique() if keys else pd.Series(dtype=int)
    if counts.empty:
        return "no seeds"
    low, high = int(counts.min()), int(counts.max())
    return f"{low if low == high else f'{low}-{high}'} seed{'s' if high > 1 else ''}"


def _value_label(report: Report, metric: str) -> str:
    epoch = {"last": "last epoch", "best": "best test epoch", "selected": "selected epoch"}.get(report.value or "", "")
    unit = " (%)" if is_accuracy(metric) else ""
    return f"{metric_label(metric)}{unit}" + (f", {epoch}" if epoch else "")


def _main_metric(report: Report) -> tuple[str, str]:
    metric = report.metrics[0]
    return metric, report.metric_columns.get(metric, f"{metric}_{report.value}")


def plot_sweeps(frame: pd.DataFrame, report: Report, curves, plots_dir: Path, summary: PlotSummary) -> None:
    """The metric against each numeric swept key (Fig. 7), one line per pair, error bars = std over seeds."""
    import seaborn as sns

    metric, column = _main_metric(report)
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
        short = ".".join(key.split(".")[-2:])
        axis.set_xlabel(key.removeprefix("methods."))
        axis.set_ylabel(_value_label(report, metric))
        axis.set_title(f"{report.suite}: {metric_label(metric)} against {short}\nmean ± std over {_seeds_phrase(data)}")
        _save(figure, plots_dir, name, summary)


def _teacher_levels(report: Report, metric: str) -> dict[str, float]:
    """Each pair's teacher mean (the report's Teacher row), by pair label."""
    cells = report.cells
    teachers = cells[cells["is_teacher"] & cells["metric"].eq(metric) & cells["mean"].notna()]
    return dict(zip(teachers["pair"], teachers["mean"], strict=True))


def plot_methods(frame: pd.DataFrame, report: Report, curves, plots_dir: Path, summary: PlotSummary) -> None:
    """Bars: each method's mean over seeds per pair, std error bars, the teacher as a dashed line."""
    import seaborn as sns
    from matplotlib.lines import Line2D

    metric, column = _main_metric(report)
    done = _finished_students(frame, column)
    if done.empty:
        summary.skipped["methods"] = "no finished student runs"
        return
    plt = _pyplot()
    order = list(dict.fromkeys(done["row"]))
    pairs = list(dict.fromkeys(done["pair"]))
    teacher = _teacher_levels(report, metric)
    grid = sns.catplot(
        data=done, kind="bar", x="row", y=column, col="pair", col_order=pairs, order=order, errorbar="sd",
        col_wrap=min(3, len(pairs)), height=3.5, aspect=max(1.0, len(order) / 5), sharey=False, capsize=0.2,
    )  # fmt: skip
    spread = done.groupby(["pair", "row"])[column].agg(["mean", "std"]).fillna(0.0)
    for pair, axis in zip(pairs, grid.axes.flat, strict=False):
        axis.tick_params(axis="x", labelbottom=True)
        plt.setp(axis.get_xticklabels(), rotation=40, ha="right", rotation_mode="anchor")
        here = spread.loc[pair]
        low, high = float((here["mean"] - here["std"]).min()), float((here["mean"] + here["std"]).max())
        if pair in teacher:
            axis.axhline(teacher[pair], color="black", linestyle="--", linewidth=1.0)
            low, high = min(low, teacher[pair]), max(high, teacher[pair])
        margin = max(0.5, 0.15 * (high - low))
        top = high + margin
        if is_accuracy(metric):
            top = min(100.0, top)
        axis.set_ylim(bottom=max(0.0, np.floor(low - margin)), top=top)
    grid.set_axis_labels("", _value_label(report, metric))
    grid.set_titles("{col_name}")
    handles = [Line2D([], [], color="black", linestyle="--", label="teacher")] if teacher else []
    handles.append(Line2D([], [], color="black", marker="|", linestyle="", markersize=10, label="± std over seeds"))
    grid.figure.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    grid.figure.suptitle(
        f"{report.suite}: {_value_label(report, metric)} per method\nmean over {_seeds_phrase(done)}", y=1.08
    )
    _save(grid.figure, plots_dir, "methods", summary)


def plot_curves(frame: pd.DataFrame, report: Report, curves, plots_dir: Path, summary: PlotSummary) -> None:
    """Per-epoch test loss and top-1 of every student row for each pair (Figs. 4 and 5), lr steps dashed."""
    import seaborn as sns
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    if curves is None or curves.empty:
        summary.skipped["curves"] = "no per-epoch metrics (metrics.jsonl) found for the suite's runs"
        return
    students = frame[frame["kind"].eq("student")]
    runs = students.assign(row=row_labels(students))[["run_id", "row", "teacher", "student", "seed"]]
    data = curves.merge(runs, on="run_id")
    if "phase" in data and data["phase"].notna().any():
        data = data[data["phase"].fillna("main").eq("main")]
    if data.empty:
        summary.skipped["curves"] = "no per-epoch metrics for student runs"
        return
    chosen = [row for row in report.rows if row in set(data["row"])] or list(dict.fromkeys(data["row"]))
    data = data.assign(pair=_pair_labels(data))
    long = data.melt(
        id_vars=["run_id", "row", "pair", "epoch", "lr", "seed"], value_vars=["test_loss", "test_top1"],
        var_name="measure",
    )  # fmt: skip
    pairs = list(dict.fromkeys(data["pair"]))
    palette = sns.color_palette("tab10" if len(chosen) <= 10 else "husl", len(chosen))
    grid = sns.relplot(
        data=long, kind="line", x="epoch", y="value", hue="row", hue_order=chosen, row="measure",
        col="pair", col_order=pairs, errorbar="sd", height=3, aspect=1.3, facet_kws={"sharey": "row"},
        palette=palette, legend=False,
    )  # fmt: skip
    # the lr steps: epochs where the learning rate differs from the epoch before
    schedule = data.groupby("epoch")["lr"].first().sort_index()
    steps = schedule.index[1:][schedule.to_numpy()[1:] != schedule.to_numpy()[:-1]]
    for axis in grid.axes.flat:
        for epoch in steps:
            axis.axvline(epoch - 0.5, color="grey", linestyle="--", linewidth=0.8)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    grid.set_titles("{col_name}")
    for (measure, _), axis in grid.axes_dict.items():
        axis.set_ylabel("test loss" if measure == "test_loss" else "test top-1 (%)")
        if measure != "test_loss":
            axis.set_title("")
    handles = [Line2D([], [], color=color, label=row) for row, color in zip(chosen, palette, strict=True)]
    handles.append(Patch(color="grey", alpha=0.25, label="± std over seeds"))
    if len(steps):
        handles.append(Line2D([], [], color="grey", linestyle="--", linewidth=0.8, label="lr step"))
    grid.figure.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    grid.figure.suptitle(f"{report.suite}: test loss and top-1 per epoch, mean over {_seeds_phrase(data)}", y=1.03)
    _save(grid.figure, plots_dir, "curves", summary)


def plot_deltas(frame: pd.DataFrame, report: Report, curves, plots_dir: Path, summary: PlotSummary) -> None:
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
        metrics = " and ".join(metric_label(m) for m in report.metrics)
        axis.set_title(f"{report.suite} vs {paper.id}: {metrics}, ours = mean {report.seeds_phrase()}")
        axis.set_ylabel("")
        _save(figure, plots_dir, name, summary)


PlotFunction = Callable[[pd.DataFrame, Report, "pd.DataFrame | None", Path, PlotSummary], None]
#: every plot of a report, in order; each skips itself (with a reason) where the data do not support it
PLOTS: list[PlotFunction] = [plot_sweeps, plot_methods, plot_curves, plot_deltas]


def plot_all(
    frame: pd.DataFrame,
    report: Report,
    out: str | Path,
    curves: pd.DataFrame | None = None,
    *,
    plots_dir: str | Path | None = None,
) -> PlotSummary:
    """Every plot the data support, under ``plots_dir`` (default ``<out>/plots/``)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    directory = Path(plots_dir) if plots_dir is not None else Path(out) / "plots"
    summary = PlotSummary()
    for plot in PLOTS:
        plot(frame, report, curves, directory, summary)
    return summary
