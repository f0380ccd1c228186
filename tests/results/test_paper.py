"""The published numbers: kdbench/results/papers/*.yaml against the paper's restatement, and the loader's checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdbench.results.paper import (
    CRD_MODEL_NAMES,
    NA,
    available_papers,
    get_paper,
    get_table,
    load_paper,
    model_key,
    paper_value,
    resolve_tables,
)

REPO = Path(__file__).resolve().parents[2]
# In a checkout and in CI the shared folder sits beside the repository.
PAPER_DOC = REPO.parent / "shared" / "docs" / "paper-srkd.md"

# The paper numbers Table 4's rows 0..3; the paper file names them as the ablation suite's methods do.
TABLE4_LABELS = {"0": "M-FitNet", "1": "SRKD (1 stage)", "2": "SRKD (2 stages)", "3": "SRKD (3 stages)"}
METRIC_NAMES = {"top-1": "top1", "top-5": "top5"}


def _sections(text: str) -> dict[str, str]:
    """'## Table 2: ...' headings -> (heading line, body)."""
    parts = re.split(r"^## ", text, flags=re.M)
    return {part.split(":")[0].strip(): part for part in parts[1:]}


def _markdown_table(section: str) -> list[list[str]]:
    """The first Markdown table of a section, as rows of stripped cells, separator line dropped."""
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(set(cell) <= set(":-") for cell in cells):
                rows.append(cells)
        elif rows:
            break
    return rows


def _value(cell: str) -> float | str:
    return NA if cell == "NA" else float(cell)


def _pair(text: str) -> tuple[str, str]:
    teacher, student = (part.strip() for part in text.split("->"))
    return teacher, student


def _pair_in_heading(section: str) -> tuple[str, str]:
    heading = section.splitlines()[0]
    match = re.search(r"(\S+) -> (\S+)\s*$", heading)
    assert match, f"no 'Teacher -> Student' at the end of heading {heading!r}"
    return match.group(1), match.group(2)


def _doc_cells(text: str) -> dict[tuple[str, str, str, str, str], float | str]:
    """Every number of Tables 1-4 of the doc: (table key, method, teacher, student, metric) -> value."""
    sections = _sections(text)
    cells: dict[tuple[str, str, str, str, str], float | str] = {}

    header, *rows = _markdown_table(sections["Table 1"])
    pairs = [_pair(column) for column in header[1:]]
    for method, *values in rows:
        for (teacher, student), cell in zip(pairs, values, strict=True):
            cells["table1", method, teacher, student, "top1"] = _value(cell)

    header, *rows = _markdown_table(sections["Table 2"])
    teacher, student = _pair_in_heading(sections["Table 2"])
    for metric, *values in rows:
        for method, cell in zip(header[1:], values, strict=True):
            cells["table2", method, teacher, student, METRIC_NAMES[metric.lower()]] = _value(cell)

    header, *rows = _markdown_table(sections["Table 3"])
    assert header[:2] == ["pair", "metric"]
    for pair, metric, *values in rows:
        teacher, student = _pair(pair)
        for method, cell in zip(header[2:], values, strict=True):
            cells["table3", method, teacher, student, METRIC_NAMES[metric.lower()]] = _value(cell)

    header, *rows = _markdown_table(sections["Table 4"])
    teacher, student = _pair_in_heading(sections["Table 4"])
    assert header == ["number", "stages reset", "top-1"]
    for number, _, cell in rows:
        cells["table4", TABLE4_LABELS[number], teacher, student, "top1"] = _value(cell)
    return cells


@pytest.fixture(scope="module")
def doc_text() -> str:
    if not PAPER_DOC.is_file():
        pytest.skip(f"the paper's restatement is not at {PAPER_DOC} (shared/ is not beside the repository)")
    return PAPER_DOC.read_text(encoding="utf-8")


def test_doc_parser_reads_every_table(doc_text: str) -> None:
    # 12 rows x 6 pairs, 2 metrics x 7 methods, 2 pairs x 2 metrics x 8 methods, 4 rows.
    counts = {}
    for key in _doc_cells(doc_text):
        counts[key[0]] = counts.get(key[0], 0) + 1
    assert counts == {"table1": 72, "table2": 14, "table3": 32, "table4": 4}


def test_srkd_file_has_every_cell_of_the_paper(doc_text: str) -> None:
    paper = get_paper("srkd")
    expected = _doc_cells(doc_text)
    mismatches = [
        f"{key}: paper {value!r}, file {paper.tables[key[0]].value(*key[1:])!r}"
        for key, value in expected.items()
        if paper.tables[key[0]].value(*key[1:]) != value
    ]
    assert not mismatches, "\n".join(mismatches)
    # ... and nothing more: the file's cells are exactly the doc's.
    file_cells = {
        (table_key, row.method, model_key(row.teacher), model_key(row.student), row.metric)
        for table_key in ("table1", "table2", "table3", "table4")
        for row in paper.tables[table_key].frame().itertuples()
    }
    doc_cells = {(k[0], k[1], model_key(k[2]), model_key(k[3]), k[4]) for k in expected}
    assert file_cells == doc_cells


def test_srkd_teacher_accuracies_match_section_3_1(doc_text: str) -> None:
    sentence = re.search(r"Pre-trained teachers:(.*?)on CIFAR-100", doc_text, flags=re.S)
    assert sentence, "the doc no longer states the pre-trained teachers"
    stated = dict(re.findall(r"(ResNet\d+) (\d+\.\d+) %", sentence.group(1)))
    assert stated == {"ResNet110": "74.31", "ResNet56": "72.32"}
    teachers = {model_key(name): value for name, value in get_paper("srkd").teachers["cifar100"].items()}
    for name, value in stated.items():
        assert teachers[model_key(name)] == float(value)


def test_srkd_table1_baselines_are_crd_table1_but_five_typos() -> None:
    # The doc lists the cells where the SRKD paper's baselines differ from the CRD paper's Table 1.
    expected_differences = {
        ("SP", "wrn_40_2", "wrn_16_2"): (73.93, 73.83),
        ("RKD", "wrn_40_2", "wrn_16_2"): (73.55, 73.35),
        ("Teacher", "resnet56", "resnet20"): (72.32, 72.34),
        ("AT", "resnet110", "resnet32"): (72.32, 72.31),
        ("FSP", "vgg13", "vgg8"): (70.20, 70.23),
    }
    srkd, crd = get_table("srkd/table1").frame(), get_table("crd/table1").frame()
    both = srkd.merge(crd, on=["method", "teacher", "student", "metric"], suffixes=("_srkd", "_crd"))
    # 11 baseline rows x 6 shared pairs (crd/table1 adds resnet32x4 -> resnet8x4), FSP's NA cell included.
    assert len(both) == 66
    differing = both[~((both.value_srkd == both.value_crd) | (both.na_srkd & both.na_crd))]
    found = {(r.method, r.teacher, r.student): (r.value_srkd, r.value_crd) for r in differing.itertuples()}
    assert found == expected_differences


def test_crd_file_shape() -> None:
    same, cross = resolve_tables("crd")
    assert (same.id, cross.id) == ("crd/table1", "crd/table2")
    assert len(same.pairs) == 7 and len(cross.pairs) == 6
    assert list(same.rows)[:2] == ["Teacher", "Vanilla"] and list(same.rows)[-1] == "CRD"
    assert len(same.rows) == 15 and len(cross.rows) == 14  # no FSP across architectures
    assert same.value("FSP", "wrn_40_2", "wrn_40_1") == NA
    assert cross.value("KD", "vgg13", "MobileNetV2") == 67.37


@pytest.mark.parametrize("paper_id", ["srkd", "crd"])
def test_model_names_are_the_crd_codes(paper_id: str) -> None:
    from kdbench.models import MODELS

    paper = get_paper(paper_id)
    names = {name for table in paper.tables.values() for pair in table.pairs for name in pair}
    names |= {name for by_model in paper.teachers.values() for name in by_model}
    assert names <= set(CRD_MODEL_NAMES)
    for name in names & set(MODELS.names()):
        assert MODELS.canonical(name) == name


def test_lookup_is_forgiving_about_spelling() -> None:
    assert paper_value("srkd/table1", "srkd", "WRN-40-2", "WRN-16-2") == 75.83
    assert paper_value("srkd/table3", "KD + SRKD", "ResNet32", "resnet20", "top5") == 99.49
    assert paper_value("srkd/table1", "FSP", "wrn_40_2", "wrn_40_1") == NA
    assert paper_value("srkd/table1", "CRD", "wrn_40_2", "wrn_16_2") is None
    assert get_table("srkd/figure7").has_numbers is False
    assert {"crd", "srkd"} <= set(available_papers())


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("srkd/table9", "Unknown table 'srkd/table9'"),
        ("srdk/table1", "Unknown paper 'srdk'"),
        ("srkd", "not a table id"),
    ],
)
def test_unknown_tables_name_the_choices(reference: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        get_table(reference)
    assert "srkd" in str(error.value)


def test_bad_metric_is_named() -> None:
    with pytest.raises(ValueError, match="Unknown metric 'top3'.*top1"):
        paper_value("srkd/table1", "KD", "wrn_40_2", "wrn_16_2", "top3")


def test_validation_reports_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(
        """
paper: demo
tabels: {}
teachers: {cifar100: {resnet56: 72.0}}
tables:
  t1:
    kind: tabel
    dataset: cifar100
    metrics: [top1, top3]
    pairs: [[resnet56, resnet21], [ResNet56, resnet20]]
    rows:
      Teacher: {top1: [72.5, 75.0]}
      KD: {top1: [70.1]}
      kd: {top1: [70.1, 120]}
      SP: {top5: [1, 2]}
"""
    )
    with pytest.raises(ValueError) as error:
        load_paper(path)
    message = str(error.value)
    for expected in [
        "unknown key 'tabels'; valid keys: tables",
        "tables.t1.kind: 'tabel' is not one of table, curve",
        "tables.t1.metrics: ['top1', 'top3']",
        "pairs[0][1]: unknown model 'resnet21'; nearest: resnet20",
        "pairs[1][0]: write the registry name 'resnet56', not 'ResNet56'",
        "rows.KD.top1: needs one value per pair (2), got 1",
        "rows.kd: the same label as 'KD'",
        "rows.kd.top1[1]: 120 is not an accuracy",
        "rows.SP.top5: not among the table's metrics",
        "t1 Teacher resnet56 is 72.5 but teachers.cifar100.resnet56 is 72.0",
    ]:
        assert expected in message, f"{expected!r} not in:\n{message}"
    assert str(path) in message


def test_paper_id_must_match_file_name(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("paper: other\ntables: {t: {kind: curve, pairs: [[resnet56, resnet20]], rows: {}}}\n")
    with pytest.raises(ValueError, match="paper: 'other' must be the file's name, 'mine'"):
        load_paper(path)


# -- protocols ------------------------------------------------------------------------------------


def test_protocols_of_the_shipped_tables() -> None:
    """CRD: last epoch (RepDistiller train_student.py), 240 epochs; SRKD's own row: epoch and runs not stated."""
    crd = get_table("crd/table1").protocol
    assert (crd.statistic, crd.runs, crd.epochs) == ("last", 5, 240)
    srkd = get_table("srkd/table1")
    assert srkd.protocol_of("KD") == srkd.protocol  # the copied baselines carry the CRD protocol
    assert (srkd.protocol.statistic, srkd.protocol.epochs) == ("last", 240)
    own = srkd.protocol_of("SRKD")
    assert (own.statistic, own.runs, own.epochs) == (None, None, 180)
    assert own.augmentation == srkd.protocol.augmentation  # keys a row does not state come from the table
    assert get_table("srkd/table2").protocol.epochs == 100
    assert own.describe() == (
        "epoch not stated, runs not stated, 180 epochs (SRKD paper 3.1: lr 0.05, /10 at 90, 120, 150, batch 64)"
    )


def test_a_table_without_protocol_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text("paper: plain\ntables: {t: {pairs: [[resnet56, resnet20]], rows: {KD: {top1: [70.0]}}}}\n")
    table = load_paper(path).tables["t"]
    assert table.protocol is None and table.protocol_of("KD") is None


def test_protocol_mistakes_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        """
paper: bad
tables:
  t:
    pairs: [[resnet56, resnet20]]
    protocol: {statistic: median, runs: 0, epochs: 24.5, schedul: x, rows: {SRDK: {epochs: 180}, KD: 3}}
    rows: {KD: {top1: [70.0]}, SRKD: {top1: [71.0]}}
"""
    )
    _problems_include(
        path,
        [
            "tables.t.protocol.statistic: 'median' is not one of",
            "tables.t.protocol.runs: expected a positive integer or null (not stated), got 0",
            "tables.t.protocol.epochs: expected a positive integer or null (not stated), got 24.5",
            "tables.t.protocol: unknown key 'schedul'; valid keys: schedule",
            "tables.t.protocol.rows.SRDK: no row 'SRDK' in the table; rows: SRKD",
            "tables.t.protocol.rows.KD: must be a mapping of protocol keys, got 3",
        ],
    )


def _problems_include(path: Path, expected: list[str]) -> None:
    """Loading ``path`` fails with one error naming every problem in ``expected``."""
    with pytest.raises(ValueError) as error:
        load_paper(path)
    message = str(error.value)
    for line in expected:
        assert line in message, f"{line!r} not in:\n{message}"
