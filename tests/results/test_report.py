"""The report: golden Markdown/LaTeX/CSV of fabricated results, hand-checked cells, LaTeX well-formedness, speed."""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from kdbench.results.paper import get_table
from kdbench.results.report import Provenance, build_report, runs_table, sweep_suffix, write_report

from .fabricated import golden_frame, large_frame, record, ties_frame, top5_frame

GOLDEN = Path(__file__).parent / "golden"
# KDBENCH_UPDATE_GOLDEN=1 rewrites the golden files; review the diff before committing it.
UPDATE = os.environ.get("KDBENCH_UPDATE_GOLDEN") == "1"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from the golden file"


# a fixed provenance, so the golden files do not depend on where the tests run
PROVENANCE = Provenance(kdbench_version="0.0.0", results_root="results", overrides=("seeds=[0,1,2]",))


@pytest.fixture(scope="module")
def report():
    return build_report(golden_frame(), provenance=PROVENANCE)


@pytest.mark.parametrize("fmt, name", [("markdown", "table1.md"), ("latex", "table1.tex"), ("csv", "table1.csv")])
def test_golden_table1(report, fmt: str, name: str) -> None:
    _golden(name, report.render(fmt))


@pytest.mark.parametrize("fmt, name", [("markdown", "table3-top5.md"), ("latex", "table3-top5.tex")])
def test_golden_top1_and_top5(fmt: str, name: str) -> None:
    _golden(name, build_report(top5_frame()).render(fmt))


@pytest.mark.parametrize("fmt, name", [("markdown", "ties.md"), ("latex", "ties.tex"), ("csv", "ties.csv")])
def test_golden_ties(fmt: str, name: str) -> None:
    _golden(name, build_report(ties_frame(), provenance=PROVENANCE).render(fmt))


def _cells(report) -> dict[tuple[str, str, str], str]:
    return {(r.row, r.student if r.teacher == "" else r.teacher, r.metric): r.text for r in report.cells.itertuples()}


def test_cells_by_hand(report) -> None:
    """Each kind of cell, worked out from the fabricated seeds (see tests/results/fabricated.py)."""
    texts, best = report.ours_grid()
    texts.columns = best.columns = [f"{t}>{s}" for t, s, _ in report.columns]
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
    # bold: SRKD has the highest mean of every column; KD ties it on WRN-40-2 -> WRN-40-1 (KD - SRKD = -0.8,
    # -0.5, -0.2 on seeds 0-2: t = -2.89 with 2 degrees of freedom, p = 0.10); on ResNet56 -> ResNet20 SRKD has
    # one seed, so nothing is tested against it and only SRKD is bold
    assert best.sum().tolist() == [2, 1, 1] and best.loc["SRKD"].all() and best.loc["KD", wrn]
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
    assert (srkd["n"], srkd["planned"], srkd["bold"], srkd["highest"]) == (1, 3, True, True)
    assert (srkd["statistic"], srkd["stored_metric"], srkd["kdbench_version"]) == ("last", "top1_last", "0.0.0")


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
    with pytest.raises(ValueError, match="Unknown metric 'median'") as error:
        build_report(golden_frame(), value="median")
    for choice in ("last", "best", "selected", "top1_last", "top5_best", "test_loss_last"):
        assert choice in str(error.value)
    with pytest.raises(ValueError, match="Unknown table 'srkd/table7'"):
        build_report(golden_frame(), against=["srkd/table7"])
    with pytest.raises(ValueError, match="the runs store no top1_last"):
        build_report(golden_frame().drop(columns="top1_last"))
    with pytest.raises(ValueError, match="No runs"):
        build_report(golden_frame().iloc[:0])


def test_runs_csv_has_one_row_per_run(tmp_path: Path) -> None:
    frame = golden_frame()
    written = write_report(build_report(frame), frame, tmp_path)
    assert sorted(p.name for p in written.values()) == ["plots", "report.csv", "report.md", "report.tex", "runs.csv"]
    runs = pd.read_csv(written["runs"])
    assert len(runs) == frame["run_id"].nunique() == len(frame) - 3  # three Vanilla runs serve two pairs
    assert runs["run_id"].is_unique
    shared = runs[runs["run_id"].str.startswith("vanilla-resnet20")]
    assert len(shared) == 3 and shared["teacher"].isna().all()
    for column in ["suite", "dataset", "teacher", "student", "method", "params", "seed", "top1_last", "top5_best",
                   "epochs", "wall_time_s", "status", "sweep"]:  # fmt: skip
        assert column in runs.columns


# -- ties, paired differences, protocols: known answers (tests/results/fabricated.py ties_frame) ---------


@pytest.fixture(scope="module")
def ties():
    return build_report(ties_frame())


def _by_row(report, column: str, student_teacher: str = "resnet56") -> dict[str, object]:
    cells = report.cells[report.cells["teacher"].eq(student_teacher)]
    return dict(zip(cells["row"], cells[column], strict=True))


def test_ties_are_bold_and_significant_differences_are_not(ties) -> None:
    bold = _by_row(ties, "bold")
    # KD and KD+SRKD: the same on every seed (an exact tie, both the highest); FitNet within noise of them;
    # AT 1 point below on every seed (significant); SP has one seed, so it is not tested
    assert bold == {
        "Teacher": False, "Vanilla": False, "KD": True, "KD+SRKD": True, "FitNet": True, "AT": False, "SP": False,
    }  # fmt: skip
    p = _by_row(ties, "p_vs_highest")
    # FitNet - KD = -0.1, +0.2, -0.15 (mean -0.0167, std 0.189): the paired t-test, worked out with scipy
    assert p["FitNet"] == pytest.approx(scipy_stats.ttest_rel([72.9, 74.3, 74.75], [73.0, 74.1, 74.9]).pvalue)
    assert p["FitNet"] > 0.05 and p["AT"] < 0.05 and math.isnan(p["SP"])
    assert "Bold: the highest mean of its column (the lowest for a loss) and every method tied" in ties.to_markdown()


def test_paired_differences_against_scipy(ties) -> None:
    """KD - Vanilla per seed: 3.0, 3.1, 2.9; its 95% t interval and p-value from scipy, directly."""
    differences = np.array([73.0, 74.1, 74.9]) - np.array([70.0, 71.0, 72.0])
    cells = ties.cells[ties.cells["row"].eq("KD") & ties.cells["teacher"].eq("resnet56")].iloc[0]
    low, high = scipy_stats.t.interval(0.95, 2, loc=differences.mean(), scale=scipy_stats.sem(differences))
    assert cells["diff_mean"] == pytest.approx(differences.mean())
    assert (cells["diff_ci_low"], cells["diff_ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert cells["diff_p"] == pytest.approx(scipy_stats.ttest_rel([73.0, 74.1, 74.9], [70.0, 71.0, 72.0]).pvalue)
    assert cells["diff_sem"] == pytest.approx(scipy_stats.sem(differences)) and cells["diff_n"] == 3
    texts = _by_row(ties, "diff_text")
    assert texts["KD"] == f"+3.00 [{low:+.2f}, {high:+.2f}] p<0.001 (3)"
    assert texts["SP"] == "+2.00, no interval (1 seed)" and texts["Vanilla"] == "reference"
    # the cell's own interval: the t interval of the mean over seeds, and std and sem under their own names
    kd = np.array([73.0, 74.1, 74.9])
    low, high = scipy_stats.t.interval(0.95, 2, loc=kd.mean(), scale=scipy_stats.sem(kd))
    assert (cells["ci_low"], cells["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert cells["std"] == pytest.approx(kd.std(ddof=1)) and cells["sem"] == pytest.approx(scipy_stats.sem(kd))


def test_another_reference_row_and_the_bootstrap() -> None:
    report = build_report(ties_frame(), reference_row="KD", bootstrap=True)
    texts = _by_row(report, "diff_text")
    assert texts["KD"] == "reference" and texts["KD+SRKD"].startswith("+0.00 [+0.00, +0.00] p=1.000 (3)")
    assert "bootstrap [" in texts["Vanilla"] and "## Paired differences to KD" in report.to_markdown()
    with pytest.raises(ValueError, match="--against-row: no row 'KDD'.*rows: KD"):
        build_report(ties_frame(), reference_row="KDD")
    no_vanilla = ties_frame()
    no_vanilla = no_vanilla[no_vanilla["method"].ne("Vanilla")]
    report = build_report(no_vanilla)
    assert report.reference_row is None and "No Vanilla row" in report.notes[-1]


def test_protocols_marks_and_like_with_like(ties) -> None:
    # the most common protocol is stated once, unmarked; the 240-epoch KD of ResNet110 -> ResNet20 gets a mark
    assert list(ties.protocol_marks.values()) == ["", "a"]
    marks = ties.cells[ties.cells["row"].eq("KD")].set_index("teacher")["protocol_mark"].to_dict()
    assert marks == {"resnet56": "", "resnet110": "a"}
    markdown = ties.to_markdown()
    assert "Protocol: last epoch, mean of the seeds in brackets, 180 epochs, schedule srkd-cifar." in markdown
    assert "ᵃ last epoch, mean of the seeds in brackets, 240 epochs, schedule crd." in markdown
    assert "| **71.70 ± 0.82 (3) ᵃ**" in markdown
    assert "Published protocol: last epoch, mean of 5 runs, 240 epochs" in markdown
    assert ties.warnings == [
        "srkd/table1 rows Vanilla, KD, FitNet, AT, SP: ours 180 vs 240 epochs, 3 vs 5 runs published; "
        "like with like: `schedule.preset=crd` (the CRD code's 240 epochs)."
    ]
    # the golden table mixes the paper's own protocols: the copied CRD baselines and SRKD's own row
    golden = build_report(golden_frame())
    assert golden.paper_protocol_marks["srkd/table1"] == {
        get_table("srkd/table1").protocol.describe(): "",
        get_table("srkd/table1").protocol_of("SRKD").describe(): "a",
    }
    assert "| SRKD ᵃ " in golden.to_markdown()
    best = build_report(ties_frame(), value="best")
    assert "ours best vs last epoch" in best.warnings[0] and "`--metric last`" in best.warnings[0]


def test_reproduction_gap(ties) -> None:
    # intervals: ours mean +- t(0.975, 2) * sem; KD 74.0 on ResNet56 -> ResNet20 against the paper's 70.66
    kd = np.array([73.0, 74.1, 74.9])
    low, _ = scipy_stats.t.interval(0.95, 2, loc=kd.mean(), scale=scipy_stats.sem(kd))
    gap = _by_row(ties, "gap_text:srkd/table1")
    assert gap["KD"] == f"+3.34 [{low - 70.66:+.2f}, {74.0 + (74.0 - low) - 70.66:+.2f}] *"
    assert gap["Vanilla"].endswith("]") and gap["SP"] == "+2.33, no interval (1 seed)"
    assert ties.gap_summary() == (
        "2 of 6 cells differ from the paper by more than our 95% interval; 2 more with one seed have no interval."
    )
    assert "## Reproduction gap: ours - srkd/table1" in ties.to_markdown()
    assert "Reproduction gap" not in build_report(ties_frame(), against=["crd"]).to_markdown()


def test_any_stored_metric() -> None:
    frame = ties_frame().assign(weighted_f1_last=lambda f: f["top1_last"] / 100, best_epoch=170.0)
    report = build_report(frame, metric="weighted_f1")
    assert report.metric_columns == {"weighted_f1": "weighted_f1_last"} and report.value == "last"
    assert _by_row(report, "text")["KD"] == "0.74 ± 0.01 (3)"
    assert report.papers == [] or all(report.cells[f"delta:{p.id}"].isna().all() for p in report.papers)
    assert build_report(frame, metric="weighted_f1_last").metric_columns == {"weighted_f1": "weighted_f1_last"}
    assert build_report(frame, metric="best_epoch").value is None
    loss = build_report(frame, metric="test_loss_last")  # a loss: the lowest mean is the best
    assert loss.value == "last" and loss.metrics == ("test_loss",)
    frame_loss = frame.assign(test_loss_last=lambda f: 100.0 - f["top1_last"])
    assert _by_row(build_report(frame_loss, metric="test_loss_last"), "highest")["KD"]
    with pytest.raises(ValueError, match="Unknown metric 'weighted_f2'.*weighted_f1_last"):
        build_report(frame, metric="weighted_f2")
    with pytest.raises(ValueError, match="the runs store no top1_selected"):
        build_report(frame, metric="selected")


def test_provenance_names_the_files(tmp_path: Path) -> None:
    assert Provenance().suffix() == ""
    assert Provenance(metric="best").suffix() == "-best"
    assert Provenance(metric="best", overrides=("schedule.preset=crd",)).suffix() == "-best_schedule.preset=crd"
    assert Provenance(against=("crd",), reference_row="KD", alpha=0.01).suffix() == "-against-crd_vs-KD_alpha-0.01"
    long = Provenance(overrides=tuple(f"methods.KD.kd.temperature={t}" for t in range(9))).suffix()
    assert len(long) <= 61 and long != Provenance(overrides=("methods.KD.kd.temperature=0",) * 9).suffix()
    frame = ties_frame()
    default = write_report(build_report(frame, provenance=Provenance()), frame, tmp_path)
    best = write_report(build_report(frame, metric="best", provenance=Provenance(metric="best")), frame, tmp_path)
    assert default["markdown"].name == "report.md" and best["markdown"].name == "report-best.md"
    assert "last epoch" in default["markdown"].read_text() and "best test epoch" in best["markdown"].read_text()
    assert "metric: best (stored as top1_best)" in best["markdown"].read_text()
    named = write_report(build_report(frame), frame, tmp_path, name="mine")
    assert [p.name for p in named.values()] == ["mine.md", "mine.tex", "mine.csv", "mine-runs.csv", "mine-plots"]


# -- LaTeX ----------------------------------------------------------------------------------------


def _latex_problems(tex: str) -> list[str]:
    problems = []
    # two-line column headers are a nested tabular of one column: one header cell each
    tex = re.sub(r"\\begin\{tabular\}\[b\]\{@\{\}c@\{\}\}.*?\\end\{tabular\}", "H", tex)
    # comments: from an unescaped % to the end of its line
    tex = re.sub(r"(?<!\\)%[^\n]*", "", tex)
    unescaped = re.sub(r"\\.", "", tex)  # drop escaped characters (\%, \_, \{, \\ ...)
    if unescaped.count("{") != unescaped.count("}"):
        problems.append("unbalanced braces")
    for char in "_%&#":
        if char == "&":
            continue  # column separators, checked per row below
        if char in unescaped:
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
            line = line.strip()
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
    assert _latex_problems(good.replace("Vanilla & ", "Vanilla ", 1))
    assert _latex_problems(good.replace("\\textbf{", "\\textbf{{", 1))
    assert _latex_problems(good + "±")


def _compile(tmp_path: Path, body: str) -> str:
    """pdflatex an article around ``body``; returns the log (where an over-wide table says 'Overfull \\hbox')."""
    (tmp_path / "report.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs,graphicx}\n\\begin{document}\n" + body + "\\end{document}\n"
    )
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "report.pdf").stat().st_size > 0
    return (tmp_path / "report.log").read_text(errors="replace")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="optional: pdflatex is not installed (texlive)")
def test_latex_compiles_within_the_text_width(tmp_path: Path) -> None:
    """Every table of a 10-pair report fits an article's text width; without the resize the same one does not."""
    wide = build_report(large_frame(2_000))
    assert len(wide.columns) == 10
    for frame in (golden_frame(), ties_frame()):
        log = _compile(tmp_path, build_report(frame, provenance=PROVENANCE).to_latex())
        assert "Overfull \\hbox" not in log
    tex = wide.to_latex()
    assert "Overfull \\hbox" not in _compile(tmp_path, tex)
    # the check can fail: the same tables without the resize box overflow the text width
    unresized = tex.replace("\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%", "{")
    assert unresized != tex and "Overfull \\hbox" in _compile(tmp_path, unresized)


# -- size ------------------------------------------------------------------------------------------


def test_ten_thousand_runs_render_every_row_and_column() -> None:
    # no wall-time assertion (benchmarks are not tests): the large frame must render completely
    frame = large_frame(10_000)
    report = build_report(frame)
    outputs = [report.to_markdown(), report.to_latex(), report.to_csv(), runs_table(frame).to_csv()]
    assert all(outputs)
    assert len(report.rows) == 21 and len(report.columns) == 10
    assert len(runs_table(frame)) == 10_000
