"""The report: golden Markdown/LaTeX/CSV of fabricated results, hand-checked cells, LaTeX well-formedness, speed."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from kdbench.results.report import build_report, runs_table, sweep_suffix, write_report

from .fabricated import golden_frame, large_frame, record, top5_frame

GOLDEN = Path(__file__).parent / "golden"
# KDBENCH_UPDATE_GOLDEN=1 rewrites the golden files; review the diff before committing it.
UPDATE = os.environ.get("KDBENCH_UPDATE_GOLDEN") == "1"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from the golden file"


@pytest.fixture(scope="module")
def report():
    return build_report(golden_frame())


@pytest.mark.parametrize("fmt, name", [("markdown", "table1.md"), ("latex", "table1.tex"), ("csv", "table1.csv")])
def test_golden_table1(report, fmt: str, name: str) -> None:
    _golden(name, report.render(fmt))


@pytest.mark.parametrize("fmt, name", [("markdown", "table3-top5.md"), ("latex", "table3-top5.tex")])
def test_golden_top1_and_top5(fmt: str, name: str) -> None:
    _golden(name, build_report(top5_frame()).render(fmt))


def _cells(report) -> dict[tuple[str, str, str], str]:
    return {(r.row, r.student if r.teacher == "" else r.teacher, r.metric): r.text for r in report.cells.itertuples()}


def test_cells_by_hand(report) -> None:
    """Each kind of cell, worked out from the fabricated seeds (see tests/results/fabricated.py)."""
    texts, best = report.ours_grid()
    texts.columns = [f"{t}>{s}" for t, s, _ in report.columns]
    assert report.rows == [
        "Teacher", "Vanilla", "KD", "FSP", "SRKD", "KD+SRKD (srkd.weight=0.01)", "KD+SRKD (srkd.weight=1)",
    ]  # fmt: skip
    wrn, r56, r110 = "wrn_40_2>wrn_40_1", "resnet56>resnet20", "resnet110>resnet20"
    assert texts.loc["KD", wrn] == "73.50 ± 0.50 (3)"  # 73, 73.5, 74
    assert texts.loc["KD", r56] == "70.50 ± 0.71 (2/3)"  # 70, 71 and one still running
    assert texts.loc["KD", r110] == "pending 3/3"  # never zero
    assert texts.loc["FSP", wrn] == "NA"  # not applicable
    assert texts.loc["FSP", r110] == "—"  # no run planned at all
    assert texts.loc["SRKD", r56] == "72.10 (1/3)"  # one seed: no std
    assert texts.loc["KD+SRKD (srkd.weight=1)", wrn] == "failed 1/1"
    assert texts.loc["Teacher", r110] == "74.31 (1)"  # a checkpoint teacher: its students' measurement
    assert texts.loc["Vanilla", r56] == texts.loc["Vanilla", r110] == "69.00 ± 0.50 (3)"  # one run set, two pairs
    assert best.sum().tolist() == [1, 1, 1] and best.loc["SRKD"].all()
    paper = report.paper_grid(report.papers[0])
    paper.columns = texts.columns
    assert paper.loc["SRKD", r56] == "71.84 (+0.26)"  # 72.10 - 71.84
    assert paper.loc["KD", r110] == "70.67"  # nothing of ours to compare
    assert paper.loc["FSP", wrn] == "NA"
    assert paper.loc["KD+SRKD (srkd.weight=1)", r56] == "—"


def test_best_epoch_metric() -> None:
    texts, _ = build_report(golden_frame(), value="best").ours_grid()
    # the fabricated best epoch is 0.25 above the last one
    assert texts.loc["SRKD"].tolist() == ["74.25 ± 0.20 (3)", "72.35 (1/3)", "72.25 ± 0.71 (2/3)"]


def test_csv_reads_back(report) -> None:
    cells = pd.read_csv(io.StringIO(report.to_csv()))
    assert len(cells) == 7 * 3
    fsp = cells[(cells.row == "FSP") & (cells.student == "wrn_40_1")].iloc[0]
    assert pd.isna(fsp["paper:srkd/table1"]) and pd.isna(fsp["mean"])  # NA reads back as missing, never 0
    as_text = pd.read_csv(io.StringIO(report.to_csv()), keep_default_na=False, dtype=str)
    fsp = as_text[(as_text.row == "FSP") & (as_text.student == "wrn_40_1")].iloc[0]
    assert (fsp["paper:srkd/table1"], fsp["text"], fsp["mean"]) == ("NA", "NA", "")
    srkd = cells[(cells.row == "SRKD") & (cells.teacher == "resnet56")].iloc[0]
    assert srkd["delta:srkd/table1"] == pytest.approx(72.1 - 71.84)
    assert (srkd["n"], srkd["planned"], srkd["best"]) == (1, 3, True)


def test_against_a_whole_paper() -> None:
    report = build_report(golden_frame(), against=["crd"])
    assert [p.id for p in report.papers] == ["crd/table1"]
    assert report.notes == ["crd/table2 (Table 2 (README part 2)) has no cell in common with this suite."]
    paper = report.paper_grid(report.papers[0])
    assert paper.loc["Teacher"].tolist() == ["75.61 (-0.11)", "72.34 (-0.34)", "74.31 (+0.00)"]
    assert paper.loc["SRKD"].tolist() == ["—", "—", "—"]  # the CRD paper has no SRKD row


def test_a_curve_only_table_is_noted() -> None:
    report = build_report(golden_frame(), against=["srkd/figure7"])
    assert report.papers == [] and "publishes only a curve" in report.notes[0]
    assert "## Paper" not in report.to_markdown()


def test_sweep_labels() -> None:
    assert sweep_suffix('{"methods.SRKD.srkd.weight": 0.001}', "SRKD") == " (srkd.weight=0.001)"
    assert sweep_suffix('{"schedule.epochs": 2, "methods.KD.kd.temperature": 4.0}', "SRKD") == (
        " (schedule.epochs=2, kd.temperature=4)"
    )
    assert sweep_suffix("{}", "KD") == ""


def test_teacher_runs_whatever_their_method_label() -> None:
    frame = pd.DataFrame(
        [
            {**record("Vanilla", None, "resnet56", 0, 72.0), "kind": "teacher"},
            record("Vanilla", "resnet56", "resnet20", 0, 69.0),
        ]
    )
    report = build_report(frame, against=["srkd/table1"])
    assert report.rows == ["Teacher", "Vanilla"] and report.teacher_rows == 1
    assert report.grid("text").iloc[:, 0].tolist() == ["72.00 (1)", "**69.00 (1)**".strip("*")]


def test_user_errors_name_the_choices() -> None:
    with pytest.raises(ValueError, match="Unknown value 'median'.*last, best"):
        build_report(golden_frame(), value="median")
    with pytest.raises(ValueError, match="Unknown table 'srkd/table7'"):
        build_report(golden_frame(), against=["srkd/table7"])
    with pytest.raises(ValueError, match="lacks column.*top1_last"):
        build_report(golden_frame().drop(columns="top1_last"))
    with pytest.raises(ValueError, match="No runs"):
        build_report(golden_frame().iloc[:0])


def test_runs_csv_has_one_row_per_run(tmp_path: Path) -> None:
    frame = golden_frame()
    written = write_report(build_report(frame), frame, tmp_path)
    assert sorted(p.name for p in written.values()) == ["report.csv", "report.md", "report.tex", "runs.csv"]
    runs = pd.read_csv(written["runs"])
    assert len(runs) == frame["run_id"].nunique() == len(frame) - 3  # three Vanilla runs serve two pairs
    assert runs["run_id"].is_unique
    shared = runs[runs["run_id"].str.startswith("vanilla-resnet20")]
    assert len(shared) == 3 and shared["teacher"].isna().all()
    for column in ["suite", "dataset", "teacher", "student", "method", "params", "seed", "top1_last", "top5_best",
                   "epochs", "wall_time_s", "status", "sweep"]:  # fmt: skip
        assert column in runs.columns


# -- LaTeX ----------------------------------------------------------------------------------------


def _latex_problems(tex: str) -> list[str]:
    problems = []
    unescaped = re.sub(r"\\.", "", tex)  # drop escaped characters (\%, \_, \{, \\ ...)
    if unescaped.count("{") != unescaped.count("}"):
        problems.append("unbalanced braces")
    for char in "_%&#":
        if char == "&":
            continue  # column separators, checked per row below
        if char in unescaped.replace("\n%", "\n").lstrip("%"):
            problems.append(f"unescaped {char}")
    if any(ord(ch) > 127 for ch in tex):
        problems.append("non-ASCII characters: " + "".join(sorted({ch for ch in tex if ord(ch) > 127})))
    if unescaped.count("$") % 2:
        problems.append("unbalanced $")
    for environment in ("table", "tabular"):
        if tex.count(f"\\begin{{{environment}}}") != tex.count(f"\\end{{{environment}}}"):
            problems.append(f"unbalanced {environment}")
    for spec, body in re.findall(r"\\begin\{tabular\}\{([^}]*)\}(.*?)\\end\{tabular\}", tex, flags=re.S):
        columns = len(spec)
        for line in body.strip().splitlines():
            if line.startswith(("\\toprule", "\\midrule", "\\bottomrule")):
                continue
            if not line.endswith("\\\\"):
                problems.append(f"row without \\\\: {line}")
            cells = len(re.split(r"(?<!\\)&", line))
            if cells != columns:
                problems.append(f"{cells} cells for {columns} columns: {line}")
    return problems


@pytest.mark.parametrize("frame", [golden_frame, top5_frame])
def test_latex_is_well_formed(frame) -> None:
    tex = build_report(frame()).to_latex()
    assert _latex_problems(tex) == []
    assert "\\textbf{" in tex and "\\toprule" in tex and "\\bottomrule" in tex


def test_latex_escapes_what_users_write() -> None:
    frame = golden_frame()
    frame.loc[frame["method"] == "KD", "method"] = "KD_50% & #1 {x}"
    tex = build_report(frame).to_latex()
    assert "KD\\_50\\% \\& \\#1 \\{x\\}" in tex
    assert _latex_problems(tex) == []


def test_latex_checker_catches_mistakes() -> None:
    good = build_report(top5_frame()).to_latex()
    assert _latex_problems(good.replace("\\%", "%", 1).replace("% kdbench", "x", 1))
    assert _latex_problems(good.replace("top-1 & ", "top-1 ", 1))
    assert _latex_problems(good.replace("\\textbf{", "\\textbf{{", 1))
    assert _latex_problems(good + "±")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="optional: pdflatex is not installed")
def test_latex_compiles(tmp_path: Path) -> None:
    body = build_report(golden_frame()).to_latex()
    (tmp_path / "report.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + body + "\\end{document}\n"
    )
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "report.pdf").stat().st_size > 0


# -- size ------------------------------------------------------------------------------------------


def test_ten_thousand_runs_render_every_row_and_column() -> None:
    # no wall-time assertion (benchmarks are not tests): the large frame must render completely
    frame = large_frame(10_000)
    report = build_report(frame)
    outputs = [report.to_markdown(), report.to_latex(), report.to_csv(), runs_table(frame).to_csv()]
    assert all(outputs)
    assert len(report.rows) == 21 and len(report.columns) == 10
    assert len(runs_table(frame)) == 10_000
