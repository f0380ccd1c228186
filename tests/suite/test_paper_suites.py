"""The SRKD paper's suites: each validates, plans exactly the runs its table needs, and aligns with the paper file."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdbench.results.paper import get_table, label_key, model_key
from kdbench.suite import load_suite, plan

SUITES = Path(__file__).resolve().parents[2] / "suites"

# Expected counts, by hand from the paper (3 seeds everywhere, one run per teacher):
# - entries: what plan() lists, one per (report cell, seed) plus the teachers;
# - runs: distinct runs to train (a cell that does not apply trains nothing; one Vanilla run per student
#   and seed serves every pair with that student);
# - na: entries that do not apply (FSP on WRN-40-2 -> WRN-40-1, widths 64/128 vs 32/64 differ).
EXPECTED = {
    # Table 1: 4 teachers + 6 pairs x 11 methods x 3 seeds = 4 + 198 = 202 entries; FSP is NA on one pair
    # (3 entries); ResNet20's Vanilla is shared by ResNet56 -> ResNet20 and ResNet110 -> ResNet20
    # (3 runs): 202 - 3 - 3 = 196 runs (4 teachers + 192 students).
    "cifar100": {"reproduces": "srkd/table1", "entries": 202, "runs": 196, "teachers": 4, "na": 3, "epochs": 180},
    # Table 2: 1 teacher + 1 pair x 6 methods x 3 seeds = 19.
    "tinyimagenet": {"reproduces": "srkd/table2", "entries": 19, "runs": 19, "teachers": 1, "na": 0, "epochs": 100},
    # Table 3: 2 teachers + 2 pairs x 7 methods x 3 seeds = 44 (the students differ: no shared Vanilla).
    "cifar10": {"reproduces": "srkd/table3", "entries": 44, "runs": 44, "teachers": 2, "na": 0, "epochs": 180},
    # Table 4: 1 teacher + 1 pair x 4 rows (0..3 reset stages) x 3 seeds = 13.
    "ablation-stages": {"reproduces": "srkd/table4", "entries": 13, "runs": 13, "teachers": 1, "na": 0, "epochs": 180},
    # Figure 7: 2 teachers + 2 pairs x 6 lambdas x 3 seeds = 38.
    "ablation-lambda": {"reproduces": "srkd/figure7", "entries": 38, "runs": 38, "teachers": 2, "na": 0, "epochs": 180},
}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def planned(request: pytest.FixtureRequest):
    suite = load_suite(SUITES / f"{request.param}.yaml")
    return request.param, suite, plan(suite)


def test_suite_opens_with_what_it_reproduces_and_the_command(planned) -> None:
    name, _, _ = planned
    header = (SUITES / f"{name}.yaml").read_text().split("\n\n")[0]
    assert header.startswith("# SRKD paper, ")
    assert f"kdbench run suites/{name}.yaml" in header


def test_suite_plans_the_papers_runs(planned) -> None:
    name, suite, runs = planned
    expected = EXPECTED[name]
    distinct = {spec.run_id for spec in runs if not spec.not_applicable}
    assert suite.reproduces == expected["reproduces"]
    assert len(runs) == expected["entries"]
    assert len(distinct) == expected["runs"]
    assert sum(spec.kind == "teacher" for spec in runs) == expected["teachers"]
    assert sum(bool(spec.not_applicable) for spec in runs) == expected["na"]
    assert {spec.seed for spec in runs if spec.kind == "student"} == {0, 1, 2}
    assert {spec.schedule["epochs"] for spec in runs} == {expected["epochs"]}


def test_suite_aligns_with_the_paper_table(planned) -> None:
    """Same pairs in the same order, and every method label is a row of the paper's table."""
    _, suite, runs = planned
    table = get_table(suite.reproduces)
    students = [spec for spec in runs if spec.kind == "student"]
    pairs = list(dict.fromkeys((model_key(s.pair_teacher), model_key(s.student)) for s in students))
    assert pairs == [(model_key(t), model_key(s)) for t, s in table.pairs]
    labels = list(dict.fromkeys(spec.method for spec in students))
    if table.has_numbers:
        assert labels == [label for label in table.rows if label != "Teacher"]
        assert all(label_key(label) in {label_key(row) for row in table.rows} for label in labels)
    else:  # Figure 7: only SRKD, at each lambda of the figure
        assert labels == ["SRKD"]
        weights = sorted({dict(s.terms)["srkd"]["weight"] for s in students})
        assert weights == table.sweep["lambda"]


def test_fsp_is_na_only_where_the_paper_prints_na() -> None:
    runs = plan(load_suite(SUITES / "cifar100.yaml"))
    na = {(s.method, s.pair_teacher, s.student) for s in runs if s.not_applicable}
    assert na == {("FSP", "wrn_40_2", "wrn_40_1")}
    assert get_table("srkd/table1").value("FSP", "wrn_40_2", "wrn_40_1") == "NA"


def test_one_key_loads_the_crd_teachers() -> None:
    runs = plan(load_suite(SUITES / "cifar100.yaml", ["teacher_checkpoints=save/models"]))
    assert not any(spec.kind == "teacher" for spec in runs)
    users = [spec for spec in runs if spec.teacher is not None]
    assert {spec.teacher_checkpoint for spec in users} == {
        f"save/models/{name}_vanilla/ckpt_epoch_240.pth" for name in ("wrn_40_2", "resnet56", "resnet110", "vgg13")
    }
    assert len({spec.run_id for spec in runs if not spec.not_applicable}) == 192


@pytest.mark.parametrize("name", ["cifar100", "tinyimagenet", "ablation-lambda"])
def test_one_key_switches_to_the_crd_schedule(name: str) -> None:
    runs = plan(load_suite(SUITES / f"{name}.yaml", ["schedule=crd"]))
    assert {(spec.schedule["epochs"], tuple(spec.schedule["milestones"])) for spec in runs} == {(240, (150, 180, 210))}


def test_ablation_rows_reset_stages_from_the_last_backwards() -> None:
    runs = plan(load_suite(SUITES / "ablation-stages.yaml"))
    terms = {spec.method: dict(spec.terms) for spec in runs if spec.kind == "student"}
    assert set(terms["M-FitNet"]) == {"kd", "mfitnet"}
    assert [terms[f"SRKD ({k} stage{'s' if k > 1 else ''})"]["srkd"]["reset_stages"] for k in (1, 2, 3)] == [1, 2, 3]


def test_the_ablation_teacher_is_table_1s() -> None:
    """Content-addressed runs: the ResNet56 teacher trains once for Table 1 and Table 4."""
    table1 = {s.run_id for s in plan(load_suite(SUITES / "cifar100.yaml")) if s.kind == "teacher"}
    table4 = {s.run_id for s in plan(load_suite(SUITES / "ablation-stages.yaml")) if s.kind == "teacher"}
    assert len(table4) == 1 and table4 <= table1
