"""The practitioner's figures and per-class table from real tiny runs (a KD temperature sweep)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdbench.results.practitioner import per_class_table, plot_practitioner
from kdbench.results.report import build_report
from kdbench.results.store import ResultStore, results_frame
from kdbench.suite import load_suite, plan
from kdbench.train import train_run
from tests.conftest import tiny_suite


def test_figures_and_per_class_table(write_suite, tmp_path: Path) -> None:
    schedule = {"epochs": 1, "batch_size": 16, "lr": 0.05, "milestones": []}
    suite = tiny_suite(schedule=schedule, seeds=[0, 1], sweeps={"methods.KD.kd.temperature": [1, 16]})
    runs = plan(load_suite(write_suite(suite)))
    store = ResultStore(tmp_path / "results")
    for spec in runs.runs:
        store.write_spec(spec)
        train_run(store.run_dir(spec.run_id))
    frame = results_frame(runs, store)
    report = build_report(frame)
    summary = plot_practitioner(frame, report, store, tmp_path / "plots")
    names = {path.name for path in summary.written}
    for name in ("kd-vs-kd-temperature", "model-size", "metric-vs-flops", "confusion-ResNet8-ResNet8"):
        assert f"{name}.png" in names and f"{name}.pdf" in names, (name, names, summary.skipped)
    assert {"per-class.md", "per-class.csv"} <= names

    # the table is the mean over seeds of what each result.json records
    table = per_class_table(
        {("KD", "pair"): [store.result(spec.run_id) for spec in runs.runs if spec.method == "KD"]}, "last"
    )
    kd_results = [store.result(spec.run_id) for spec in runs.runs if spec.method == "KD"]
    expected = np.mean([result["weighted_f1_last"] for result in kd_results])
    assert table.loc[0, "weighted F1"] == expected
    assert table.loc[0, "F1 2"] == np.mean([result["per_class_f1_last"][2] for result in kd_results])
