"""``kdbench report`` end to end on the smoke suite, with result records fabricated in a results root."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kdbench.cli import main
from kdbench.results.store import ResultStore, atomic_write_json
from kdbench.suite import load_suite, plan

SMOKE = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"
# (method, seed) -> last-epoch top-1; the teacher is the one Teacher run
FABRICATED = {("Teacher", 0): 97.0, ("Vanilla", 0): 90.0, ("Vanilla", 1): 91.0, ("KD", 0): 93.0, ("KD", 1): 94.0}


@pytest.fixture()
def results_root(tmp_path: Path) -> Path:
    store = ResultStore(tmp_path)
    for spec in plan(load_suite(SMOKE)):
        top1 = FABRICATED.get((spec.method, spec.seed))
        if top1 is None:
            continue  # seed 2 of each student stays pending
        store.write_spec(spec)
        record = {"top1_last": top1, "top5_last": 100.0, "top1_best": top1 + 1, "top5_best": 100.0, "epochs": 15}
        atomic_write_json(store.run_dir(spec.run_id) / "result.json", record)
    return tmp_path


def test_report_prints_and_writes_the_table(results_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(SMOKE), "--results-dir", str(results_root), "--no-plots"]) == 0
    out, err = capsys.readouterr()
    assert "| Teacher  | 97.00 (1)" in out
    assert "| Vanilla  | 90.50 ± 0.71 (2/3)" in out  # 90, 91 and seed 2 pending
    assert "| KD       | **93.50 ± 0.71 (2/3)**" in out
    assert "wrote report.md, report.tex, report.csv, runs.csv" in err
    written = results_root / "smoke"
    assert (written / "report.md").read_text() == out
    runs = pd.read_csv(written / "runs.csv")
    assert len(runs) == 7 and runs["status"].value_counts().to_dict() == {"done": 5, "pending": 2}
    assert runs["suite"].eq("smoke").all() and "reproduces" in runs.columns


def test_report_options(results_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_dir = tmp_path / "elsewhere"
    argv = ["report", str(SMOKE), "--results-dir", str(results_root), "--no-plots", "--out", str(out_dir)]
    assert main([*argv, "--format", "latex", "--metric", "best"]) == 0
    out, _ = capsys.readouterr()
    assert "\\textbf{94.50 $\\pm$ 0.71 (2/3)}" in out and "best epoch" in out
    assert (out_dir / "report.tex").read_text() == out
    assert main([*argv, "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("row,teacher,student,pair,metric,mean,std,n,planned")


def test_report_against_a_paper_table(results_root: Path, capsys: pytest.CaptureFixture) -> None:
    # The smoke suite is not in a paper; against srkd/table1 nothing aligns, which the report says.
    argv = ["report", str(SMOKE), "--results-dir", str(results_root), "--no-plots", "--against", "srkd/table1"]
    assert main(argv) == 0
    assert "srkd/table1 (Table 1) has no cell in common with this suite." in capsys.readouterr().out


def test_report_user_errors(results_root: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["report", str(SMOKE), "--results-dir", str(results_root), "--no-plots", "--against", "srkd/tabel1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Unknown table 'srkd/tabel1'" in err and "srkd/table1" in err and "Traceback" not in err


def test_report_plots(results_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(SMOKE), "--results-dir", str(results_root)]) == 0
    err = capsys.readouterr().err
    assert "plots: methods (PNG and PDF" in err
    assert "skipped curves: no per-epoch metrics" in err  # fabricated records have no metrics.jsonl
    assert (results_root / "smoke" / "plots" / "methods.png").stat().st_size > 0
