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
    # where a pinned case's teacher files exist (./save/models), its runs hold their content: the pinned id
    # is then the older id they are found under
    assert sorted({r.legacy_run_id or r.run_id for r in runs}) == PINNED[case]


def test_every_suite_is_pinned() -> None:
    suites = {f"suites/{p.name}" for p in (ROOT / "suites").glob("*.yaml")}
    missing = sorted(suites - set(PINNED))
    assert not missing, f"add the run ids of {missing} to tests/suite/run_ids.json"


def _teacher_files(folder: Path, names) -> Path:
    """A CRD teacher folder whose every file holds its model's name (fixed bytes: a pinned content hash)."""
    for name in names:
        path = folder / f"{name}_vanilla" / "ckpt_epoch_240.pth"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
    return folder


def test_run_ids_hold_a_teacher_files_content_wherever_it_lies(tmp_path: Path) -> None:
    """Pinned from when teacher files first counted by content (``run_ids_by_teacher_content.json``): the
    same bytes in two folders give the same ids, and those ids stay as they are."""
    pinned = json.loads((Path(__file__).with_name("run_ids_by_teacher_content.json")).read_text())
    for case, ids in pinned.items():
        path, *overrides = case.split(" ")
        suite = load_suite(ROOT / path, overrides)
        names = {t.name for variant in suite.variants for t in variant.teachers}
        found = []
        for mount in ("mount-a", "mount-b"):
            folder = _teacher_files(tmp_path / mount, names)
            runs = plan(load_suite(ROOT / path, [*overrides, f"teacher_checkpoints={folder}"])).runs
            found.append(sorted({r.run_id for r in runs}))
        assert found[0] == found[1] == ids, case
