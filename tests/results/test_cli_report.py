"""``kdbench report`` end to end on the smoke suite, with result records fabricated in a results root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kdbench.cli import main
from kdbench.results.store import ResultStore, atomic_write_json
from kdbench.suite import load_suite, plan
from tests.conftest import fabricated_result

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
        record = fabricated_result(spec, top1_last=top1, top1_best=top1 + 1, epochs=15)
        atomic_write_json(store.run_dir(spec.run_id) / "result.json", record)
    return tmp_path


def test_report_prints_and_writes_the_table(results_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(SMOKE), "--results-dir", str(results_root), "--no-plots"]) == 0
    out, err = capsys.readouterr()
    assert "| Teacher  | 97.00 (1)" in out
    assert "| Vanilla  | 90.50 ± 0.71 (2/3)" in out  # 90, 91 and seed 2 pending
    assert "| KD       | **93.50 ± 0.71 (2/3)**" in out  # KD - Vanilla = +3, +3: a constant, significant shift
    assert "metric: last (stored as top1_last)" in out and f"results root: {results_root}" in out
    assert "| KD       | +3.00 [+3.00, +3.00] p<0.001 (2)" in out
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
    out, err = capsys.readouterr()
    assert "\\textbf{94.50 $\\pm$ 0.71 (2/3)}" in out and "best test epoch" in out
    assert "% metric: best (stored as top1\\_best)" in out
    # another metric, another file: the default report is not overwritten
    assert (out_dir / "report-best.tex").read_text() == out and not (out_dir / "report.tex").exists()
    assert "wrote report-best.md, report-best.tex, report-best.csv, runs-best.csv" in err
    assert main([*argv, "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("row,teacher,student,pair,metric,statistic,stored_metric,mean,std,sem,ci_low,ci_high,n")
    assert (out_dir / "report-best.tex").read_text() != (out_dir / "report.tex").read_text()
    assert main([*argv, "seeds=[0,1]", "--against-row", "KD", "--name", "mine"]) == 0
    out, err = capsys.readouterr()
    assert "overrides: seeds=[0,1]" in out and "## Paired differences to KD" in out
    assert (out_dir / "mine.md").read_text() == out and "wrote mine.md, mine.tex, mine.csv, mine-runs.csv" in err
    assert main([*argv, "seeds=[0,1]"]) == 0
    assert (out_dir / "report-seeds=_0_1.md").is_file()


def test_report_against_a_paper_table(results_root: Path, capsys: pytest.CaptureFixture) -> None:
    # The smoke suite is not in a paper; against srkd/table1 nothing aligns, which the report says.
    argv = ["report", str(SMOKE), "--results-dir", str(results_root), "--no-plots", "--against", "srkd/table1"]
    assert main(argv) == 0
    assert "srkd/table1 (Table 1) has no cell in common with this suite." in capsys.readouterr().out


def test_report_user_errors(results_root: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["report", str(SMOKE), "--results-dir", str(results_root), "--no-plots"]
    assert main([*argv, "--against", "srkd/tabel1"]) == 2
    err = capsys.readouterr().err
    assert "Unknown table 'srkd/tabel1'" in err and "srkd/table1" in err and "Traceback" not in err
    assert main([*argv, "--metric", "weighted_f1"]) == 2
    err = capsys.readouterr().err
    assert "Unknown metric 'weighted_f1'" in err and "top1_last" in err and "Traceback" not in err
    assert main([*argv, "--against-row", "Vanila"]) == 2
    assert "no row 'Vanila' among the suite's students; rows: Vanilla" in capsys.readouterr().err
    assert main([*argv, "--alpha", "1.5"]) == 2
    assert "--alpha must be between 0 and 1" in capsys.readouterr().err


def test_report_command_imports_nothing_heavy() -> None:
    """``kdbench report --help`` stays instant: pandas and the report modules load inside the handler."""
    code = (
        "import sys, kdbench.cli.report as r; "
        "heavy = [m for m in ('pandas', 'seaborn', 'torch', 'kdbench.results.report') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    from kdbench.cli.report import FORMATS
    from kdbench.results.report import FORMATS as REPORT_FORMATS

    assert FORMATS == REPORT_FORMATS


def test_report_plots(results_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(SMOKE), "--results-dir", str(results_root)]) == 0
    err = capsys.readouterr().err
    assert "plots: methods," in err and "(PNG and PDF under" in err and "smoke/plots)" in err
    assert "skipped curves: no per-epoch metrics" in err  # fabricated records have no metrics.jsonl
    assert (results_root / "smoke" / "plots" / "methods.png").stat().st_size > 0
