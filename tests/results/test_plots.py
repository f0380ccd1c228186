"""Plots: each one written (PNG and PDF, non-empty) when the data support it, skipped with a reason otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kdbench.results import plots
from kdbench.results.plots import curve_runs, curves_frame, plot_all
from kdbench.results.report import build_report

from .fabricated import golden_frame, record


def _write_metrics(run_dir: Path, epochs: int = 6, offset: float = 0.0) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for epoch in range(1, epochs + 1):
        lr = 0.05 if epoch <= 3 else 0.005  # one lr step, after epoch 3
        lines.append(
            json.dumps(
                {
                    "epoch": epoch,
                    "phase": "main",
                    "lr": lr,
                    "train_loss": 2.0 / epoch,
                    "train_top1": 40.0 + epoch,
                    "test_loss": 2.5 / epoch + offset,
                    "test_top1": 30.0 + 5 * epoch - offset,
                    "test_top5": 60.0 + epoch,
                    "seconds": 1.0,
                    "losses": {"ce": 1.0 / epoch},
                }
            )
        )
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_curves_frame_reads_metrics_and_skips_torn_lines(tmp_path: Path) -> None:
    _write_metrics(tmp_path / "a", epochs=3)
    _write_metrics(tmp_path / "b", epochs=2)
    with open(tmp_path / "b" / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 3, "test_lo')  # a run killed mid-write
    (tmp_path / "c").mkdir()  # a run that never finished an epoch
    curves = curves_frame([tmp_path / "a", tmp_path / "b", tmp_path / "c"])
    assert curves.groupby("run_id")["epoch"].max().to_dict() == {"a": 3, "b": 2}
    assert curves.loc[curves.run_id == "a", "test_top1"].tolist() == [35.0, 40.0, 45.0]
    assert curves.loc[curves.run_id == "a", "lr"].tolist() == [0.05, 0.05, 0.05]


def test_curve_runs_are_every_started_student_row() -> None:
    frame = golden_frame()
    chosen = set(frame.set_index("run_id").loc[curve_runs(frame), "method"])
    # every row, not only the paper's Vanilla, KD and SRKD; pending and NA runs have no curves
    assert chosen == {"Vanilla", "KD", "FSP", "SRKD", "KD+SRKD"}
    assert not frame.set_index("run_id").loc[curve_runs(frame), "status"].isin(["na", "pending"]).any()


@pytest.fixture(scope="module")
def plotted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("plots")
    # one pair keeps the figures small (matplotlib's layout is the slow part); it has every kind of data
    frame = golden_frame()
    frame = frame[frame["teacher"].eq("resnet56") | frame["student"].eq("resnet56")]
    run_ids = curve_runs(frame)
    for index, run_id in enumerate(run_ids):
        _write_metrics(root / "runs" / run_id, offset=0.1 * (index % 3))
    curves = curves_frame(root / "runs" / run_id for run_id in run_ids)
    summary = plot_all(frame, build_report(frame), root / "out", curves)
    return root / "out" / "plots", summary


@pytest.mark.parametrize("name", ["sweep-methods-KDSRKD-srkd-weight", "methods", "curves", "delta-srkd-table1"])
def test_every_supported_plot_is_written(plotted, name: str) -> None:
    plots_dir, summary = plotted
    png, pdf = plots_dir / f"{name}.png", plots_dir / f"{name}.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1_000
    assert summary.skipped == {}


@pytest.fixture()
def figures(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The figures the plot functions make, by name, kept open instead of saved."""
    kept: dict = {}
    monkeypatch.setattr(plots, "_save", lambda figure, plots_dir, name, summary: kept.setdefault(name, figure))
    return kept


def test_methods_plot_has_the_teacher_and_stops_at_100(figures: dict, tmp_path: Path) -> None:
    # a teacher at 99.5 and students near it: the axis would run past 100 without the cap
    pair = ("resnet56", "resnet20")
    frame = pd.DataFrame(
        [record("Teacher", None, "resnet56", 0, 99.5)]
        + [record("KD", *pair, s, v) for s, v in enumerate([99.0, 99.8, 99.6])]
        + [record("Vanilla", *pair, s, v) for s, v in enumerate([98.0, 99.9, 99.0])]
    )
    report = build_report(frame, against=[])
    plots.plot_methods(frame, report, None, tmp_path, plots.PlotSummary())
    figure = figures["methods"]
    axis = figure.axes[0]
    assert axis.get_ylim()[1] <= 100.0
    teacher_lines = [line for line in axis.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_ydata()[0] for line in teacher_lines] == [99.5]
    assert "mean over 3 seeds" in figure._suptitle.get_text()
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert labels == ["teacher", "± std over seeds"]


def test_curves_plot_draws_every_row_with_integer_epochs(figures: dict, tmp_path: Path) -> None:
    frame = golden_frame()
    frame = frame[frame["teacher"].eq("resnet56") | frame["student"].eq("resnet56")]
    run_ids = curve_runs(frame)
    for index, run_id in enumerate(run_ids):
        _write_metrics(tmp_path / run_id, offset=0.1 * (index % 3))
    report = build_report(frame)
    plots.plot_curves(frame, report, curves_frame(tmp_path / r for r in run_ids), tmp_path, plots.PlotSummary())
    figure = figures["curves"]
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    rows = ["Vanilla", "KD", "FSP", "SRKD", "KD+SRKD (srkd.weight=0.01)", "KD+SRKD (srkd.weight=1)"]
    assert labels == [*rows, "± std over seeds", "lr step"]
    ticks = figure.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)
    assert "mean over 1-3 seeds" in figure._suptitle.get_text()
    # the lr step after epoch 3 is drawn, dashed, on every axis
    assert all(any(line.get_xdata()[0] == 3.5 for line in axis.get_lines()) for axis in figure.axes)


def test_plots_the_data_do_not_support_are_skipped(tmp_path: Path) -> None:
    frame = pd.DataFrame([record("KD", "resnet56", "resnet20", 0), record("KD", "resnet56", "resnet20", 1)])
    summary = plot_all(frame, build_report(frame, against=["srkd/figure7"]), tmp_path)
    assert summary.written == []
    assert set(summary.skipped) == {"sweep", "methods", "curves", "delta"}
    assert summary.skipped["methods"] == "no finished student runs"
    assert not (tmp_path / "plots").exists()
