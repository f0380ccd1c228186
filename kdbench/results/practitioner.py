"""The figures and table a practitioner looks at (the KD course project's workflow), beside the paper plots.

- ``kd-vs-<key>``: the report's metric against each numeric swept parameter, log x where the values
  spread over a decade or more, one line per value of the other swept parameters (and per pair),
  error bars = std over seeds, and the no-KD baseline (the pair's Vanilla row, mean over seeds) as
  a horizontal line: "KD vs no KD" at every temperature.
- ``model-size``: parameters and FLOPs (one forward pass of one image) of the teacher and of each
  student, as bars.
- ``metric-vs-flops``: the metric against FLOPs, one point per (model, method), teacher included.
- ``confusion``: the test confusion matrices of the teacher and of each student row (summed over
  seeds, normalised per true class), side by side, for suites with at most 10 classes; at the
  selected epoch where the report reads selected values, else the last.
- ``per-class.md`` / ``per-class.csv``: per row, recall (per-class accuracy) and F1 of every class and
  the weighted F1, mean over seeds, read from each run's ``result.json``.

``plot_practitioner(frame, report, store, plots_dir)`` writes all that the data support and says why
it skipped the others, like ``kdbench.results.plots.plot_all``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdbench.results.plots import (
    PlotSummary,
    _finished_students,
    _main_metric,
    _pair_labels,
    _pyplot,
    _save,
    _seeds_phrase,
    _value_label,
)
from kdbench.results.report import Report, display_model, metric_label, row_labels

#: the baseline row of the "KD vs no KD" lines
BASELINE_ROW = "Vanilla"
#: confusion matrices are drawn for suites with at most this many classes
MAX_CONFUSION_CLASSES = 10


def _sweeps(frame: pd.DataFrame) -> pd.Series:
    return frame["sweep"].fillna("{}").map(lambda text: json.loads(text) if isinstance(text, str) else dict(text))


def plot_metric_vs_sweep(frame: pd.DataFrame, report: Report, plots_dir: Path, summary: PlotSummary) -> None:
    """The metric against each swept parameter, a line per other swept value, the no-KD baseline level."""
    import seaborn as sns

    metric, column = _main_metric(report)
    done = _finished_students(frame, column)
    points = _sweeps(done)
    keys = list(dict.fromkeys(key for point in points for key in point))
    if not keys:
        summary.skipped["kd-vs-sweep"] = "the suite sweeps no parameter"
        return
    plt = _pyplot()
    baseline = done[done["row"].eq(BASELINE_ROW)].groupby("pair")[column].mean()
    for key in keys:
        values = pd.to_numeric(points.map(lambda point, key=key: point.get(key)), errors="coerce")
        others = points.map(lambda point, key=key: ", ".join(f"{k}={v}" for k, v in point.items() if k != key))
        data = done.assign(x=values, line=[f"{p} {o}".strip() for p, o in zip(done["pair"], others, strict=True)])
        data = data[data["x"].notna()]
        short = ".".join(key.split(".")[-2:])
        name = f"kd-vs-{short.replace('.', '-')}"
        if data["x"].nunique() < 2:
            summary.skipped[name] = f"fewer than two finished numeric values of {key}"
            continue
        figure, axis = plt.subplots(figsize=(6.5, 4))
        sns.lineplot(data=data, x="x", y=column, hue="line", errorbar="sd", err_style="bars", marker="o", ax=axis)
        for pair, level in baseline.items():
            if pair in set(data["pair"]):
                axis.axhline(level, linestyle="--", color="grey", label=f"no KD ({BASELINE_ROW}), {pair}")
        if (data["x"] > 0).all() and data["x"].max() / data["x"].min() >= 10:
            axis.set_xscale("log")
        axis.set_xlabel(key.removeprefix("methods."))
        axis.set_ylabel(_value_label(report, metric))
        axis.legend(fontsize="small")
        axis.set_title(f"{report.suite}: {metric_label(metric)} against {short}\nmean ± std over {_seeds_phrase(data)}")
        _save(figure, plots_dir, name, summary)


def _models(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, role): parameters and FLOPs as the runs recorded them."""
    done = frame[frame["status"].eq("done") & frame["student_params"].notna()]
    roles = np.where(done["kind"].eq("teacher"), "teacher", "student")
    models = done.assign(role=roles, model=done["student"].map(display_model))
    return models.drop_duplicates(["model", "role"])[["model", "role", "student_params", "student_flops"]]


def plot_model_size(frame: pd.DataFrame, report: Report, plots_dir: Path, summary: PlotSummary) -> None:
    """Parameters and FLOPs of the teacher and the students, as bars."""
    models = _models(frame)
    if models.empty:
        summary.skipped["model-size"] = "no finished runs"
        return
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    labels = [f"{m}\n({r})" for m, r in zip(models["model"], models["role"], strict=True)]
    colours = ["tab:orange" if role == "teacher" else "tab:blue" for role in models["role"]]
    for axis, column, title in ((axes[0], "student_params", "parameters (M)"), (axes[1], "student_flops", "FLOPs (M)")):
        axis.bar(labels, models[column] / 1e6, color=colours)
        axis.set_title(title)
        axis.tick_params(axis="x", labelsize="small")
    figure.suptitle(f"{report.suite}: model size (FLOPs of one {report.dataset} image)")
    _save(figure, plots_dir, "model-size", summary)


def plot_metric_vs_flops(frame: pd.DataFrame, report: Report, plots_dir: Path, summary: PlotSummary) -> None:
    """The metric against FLOPs: one point per (model, method), the teacher too, error bars over seeds."""
    metric, column = _main_metric(report)
    done = frame[frame["status"].eq("done") & frame[column].notna() & frame["student_flops"].notna()]
    if done.empty:
        summary.skipped["metric-vs-flops"] = "no finished runs with FLOPs"
        return
    done = done.assign(row=row_labels(done), model=done["student"].map(display_model))
    points = done.groupby(["model", "row"]).agg(
        flops=("student_flops", "first"), mean=(column, "mean"), std=(column, "std"), seeds=("seed", "nunique")
    )
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for (model, row), point in points.iterrows():
        axis.errorbar(point["flops"] / 1e6, point["mean"], yerr=np.nan_to_num(point["std"]), fmt="o", capsize=3)
        axis.annotate(f"{model} {row}", (point["flops"] / 1e6, point["mean"]), fontsize="small")
    if points["flops"].max() / max(points["flops"].min(), 1) >= 10:
        axis.set_xscale("log")
    axis.set_xlabel("FLOPs per image (M)")
    axis.set_ylabel(_value_label(report, metric))
    seeds = int(points["seeds"].max())
    axis.set_title(f"{report.suite}: {metric_label(metric)} against FLOPs\nmean ± std over up to {seeds} seed(s)")
    _save(figure, plots_dir, "metric-vs-flops", summary)


def _results_by_row(frame: pd.DataFrame, store: Any) -> dict[tuple[str, str], list[dict]]:
    """Each (row label, pair label)'s finished result records; a teacher's runs join every pair it teaches."""
    done = frame[frame["status"].eq("done")]
    done = done.assign(row=row_labels(done), pair=_pair_labels(done))
    students = done[done["kind"].eq("student")]
    pairs_of = {}
    for teacher, pair in zip(students["teacher"], students["pair"], strict=True):
        pairs_of.setdefault(teacher, []).append(pair)
    grouped: dict[tuple[str, str], list[dict]] = {}
    for kind, model, row, pair, run_id in zip(
        done["kind"], done["student"], done["row"], done["pair"], done["run_id"], strict=True
    ):
        result = store.result(run_id)
        if result is None:
            continue
        for target in dict.fromkeys(pairs_of.get(model, [])) if kind == "teacher" else [pair]:
            grouped.setdefault((row, target), []).append(result)
    return grouped


def _tag(report: Report) -> str:
    return "selected" if report.value == "selected" else "last"


def plot_confusion(
    frame: pd.DataFrame, report: Report, store: Any, plots_dir: Path, summary: PlotSummary
) -> dict[tuple[str, str], list[dict]]:
    """Confusion matrices of the teacher and each student row, per pair, summed over seeds."""
    grouped = _results_by_row(frame, store)
    tag = _tag(report)
    usable = {key: runs for key, runs in grouped.items() if all(r.get(f"confusion_{tag}") for r in runs)}
    if not usable:
        summary.skipped["confusion"] = f"no finished run records a {tag}-epoch confusion matrix"
        return grouped
    classes = len(next(iter(usable.values()))[0][f"confusion_{tag}"])
    if classes > MAX_CONFUSION_CLASSES:
        summary.skipped["confusion"] = f"{classes} classes (drawn up to {MAX_CONFUSION_CLASSES})"
        return grouped
    plt = _pyplot()
    for pair in dict.fromkeys(pair for _, pair in usable):
        rows = [row for row, p in usable if p == pair]
        figure, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.2), squeeze=False)
        for axis, row in zip(axes[0], rows, strict=True):
            runs = usable[row, pair]
            matrix = np.sum([np.array(run[f"confusion_{tag}"], dtype=float) for run in runs], axis=0)
            shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
            axis.imshow(shares, vmin=0, vmax=1, cmap="Blues")
            names = runs[0].get("class_names") or [str(i) for i in range(classes)]
            axis.set_xticks(range(classes), names, rotation=90 if classes > 4 else 0, fontsize="small")
            axis.set_yticks(range(classes), names, fontsize="small")
            for i in range(classes):
                for j in range(classes):
                    colour = "white" if shares[i, j] > 0.5 else "black"
                    axis.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", fontsize="x-small", color=colour)
            axis.set_title(f"{row} ({len(runs)} seed{'s' if len(runs) > 1 else ''})", fontsize="small")
            axis.set_xlabel("predicted")
            axes[0][0].set_ylabel("true class")
        figure.suptitle(f"{report.suite}, {pair}: test confusion, {tag} epoch (counts summed over seeds)")
        _save(figure, plots_dir, f"confusion-{pair.replace(' ', '').replace('->', '-')}", summary)
    return grouped


def per_class_table(grouped: dict[tuple[str, str], list[dict]], tag: str) -> pd.DataFrame:
    """Per (row, pair): every class's recall and F1 and the weighted F1, mean over seeds."""
    records = []
    for (row, pair), runs in grouped.items():
        runs = [run for run in runs if run.get(f"per_class_f1_{tag}")]
        if not runs:
            continue
        names = runs[0].get("class_names") or [str(i) for i in range(len(runs[0][f"per_class_f1_{tag}"]))]
        record: dict[str, Any] = {"row": row, "pair": pair, "seeds": len(runs)}
        for index, name in enumerate(names):
            record[f"recall {name} (%)"] = float(np.mean([run[f"per_class_recall_{tag}"][index] for run in runs]))
            record[f"F1 {name}"] = float(np.mean([run[f"per_class_f1_{tag}"][index] for run in runs]))
        record["weighted F1"] = float(np.mean([run[f"weighted_f1_{tag}"] for run in runs]))
        records.append(record)
    return pd.DataFrame.from_records(records)


def plot_practitioner(frame: pd.DataFrame, report: Report, store: Any, plots_dir: str | Path) -> PlotSummary:
    """Every figure above that the data support, under ``plots_dir``; the per-class table beside it."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    directory = Path(plots_dir)
    summary = PlotSummary()
    plot_metric_vs_sweep(frame, report, directory, summary)
    plot_model_size(frame, report, directory, summary)
    plot_metric_vs_flops(frame, report, directory, summary)
    grouped = plot_confusion(frame, report, store, directory, summary)
    table = per_class_table(grouped, _tag(report))
    if table.empty:
        summary.skipped["per-class"] = "no finished run records per-class metrics"
    else:
        directory.mkdir(parents=True, exist_ok=True)
        for suffix, text in (
            ("md", table.to_markdown(index=False, floatfmt=".3f")),
            ("csv", table.to_csv(index=False)),
        ):
            path = directory / f"per-class.{suffix}"
            path.write_text(text + ("\n" if suffix == "md" else ""))
            summary.written.append(path)
    return summary
