"""suites/sota-cifar100.yaml: the plan's counts, the CRD schedule, alignment with the tables it sits
beside, and that every published cell of the method papers is one of our rows."""

from __future__ import annotations

from pathlib import Path

from kdbench.results.paper import get_paper, get_table, label_key, model_key
from kdbench.suite import load_suite, plan

SUITE = Path(__file__).resolve().parents[2] / "suites" / "sota-cifar100.yaml"
METHODS = ["Vanilla", "KD", "DKD", "ReviewKD", "DIST", "KD+LS", "DKD+LS", "WTTM", "CTKD", "CRD"]


def test_plan_counts() -> None:
    runs = plan(load_suite(SUITE))
    # 5 teachers + 7 pairs x 10 methods x 3 seeds = 215 entries; nothing NA; ResNet20's Vanilla serves
    # both ResNet20 pairs (3 runs): 212 distinct runs, 5 teachers and 207 students
    assert len(runs) == 215
    assert not any(spec.not_applicable for spec in runs)
    distinct = {spec.run_id for spec in runs}
    assert len(distinct) == 212
    assert sum(spec.kind == "teacher" for spec in runs) == 5
    assert {(spec.schedule["epochs"], tuple(spec.schedule["milestones"])) for spec in runs} == {(240, (150, 180, 210))}
    assert {spec.seed for spec in runs if spec.kind == "student"} == {0, 1, 2}
    assert list(dict.fromkeys(spec.method for spec in runs if spec.kind == "student")) == METHODS


def test_rows_and_pairs_align_with_the_reproduced_table() -> None:
    suite = load_suite(SUITE)
    table = get_table(suite.reproduces)
    students = [spec for spec in plan(suite) if spec.kind == "student"]
    pairs = list(dict.fromkeys((model_key(s.pair_teacher), model_key(s.student)) for s in students))
    assert pairs == [(model_key(t), model_key(s)) for t, s in table.pairs]
    rows = {label_key(row) for row in table.rows}
    assert {label_key(m) for m in METHODS} - rows == {label_key(m) for m in ("ReviewKD", "KD+LS", "DKD+LS", "CTKD")}


def test_every_new_method_row_has_published_cells_on_our_pairs() -> None:
    ours = {(model_key(t), model_key(s)) for t, s in get_table("ttm/table1").pairs}
    published: set[str] = set()
    for paper in ("dkd", "ls-kd", "dist", "ttm", "ctkd"):
        for table in get_paper(paper).tables.values():
            assert table.protocol is not None and table.source, table.id
            for label, by_metric in table.rows.items():
                cells = zip(table.pairs, by_metric["top1"], strict=True)
                if any((model_key(t), model_key(s)) in ours and v is not None for (t, s), v in cells):
                    published.add(label_key(label))
    assert {label_key(m) for m in METHODS if m != "ReviewKD"} <= published
