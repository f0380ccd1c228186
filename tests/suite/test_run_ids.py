"""Run ids are a promise: stored results are found by id, so no refactor may change one.

``run_ids.json`` was computed before the suite package existed (kdbench 0.1.0's ``suite.py``); a new
suite is added to it, an existing entry is never edited. A key added to the schedule, the training
settings, a data set or a method must leave these ids alone at its default (``LATER_DEFAULTS``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdbench.suite import load_suite, plan

ROOT = Path(__file__).resolve().parents[2]
PINNED: dict[str, list[str]] = json.loads((Path(__file__).with_name("run_ids.json")).read_text())


@pytest.mark.parametrize("case", sorted(PINNED))
def test_run_ids_are_unchanged(case: str) -> None:
    path, *overrides = case.split(" ")
    runs = plan(load_suite(ROOT / path, overrides))
    assert sorted({r.run_id for r in runs}) == PINNED[case]


def test_every_suite_is_pinned() -> None:
    suites = {f"suites/{p.name}" for p in (ROOT / "suites").glob("*.yaml")}
    missing = sorted(suites - set(PINNED))
    assert not missing, f"add the run ids of {missing} to tests/suite/run_ids.json"
