"""A TAKD chain on the real test cluster: three levels (teacher, assistant, student) held with afterok."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdbench.executors.slurm import read_record, submit_suite
from kdbench.results.store import ResultStore

pytestmark = pytest.mark.slurm


def test_a_chain_of_three_levels_is_held_level_by_level_with_afterok(cluster, tmp_path: Path) -> None:
    suite_path, runs = cluster.suite(
        tmp_path,
        teachers={"resnet14": {}},
        pairs=None,
        methods=None,
        chains={"TAKD": {"models": ["resnet14", "resnet8", "resnet8"], "method": {"use": "kd"}}},
    )
    teacher = next(spec for spec in runs if spec.kind == "teacher")
    assistant = next(spec for spec in runs if spec.teacher_run == teacher.run_id)
    student = next(spec for spec in runs if spec.teacher_run == assistant.run_id)
    store = ResultStore(tmp_path / "results")
    summary = submit_suite(runs, store, cluster.profile())
    assert set(summary.submitted) == {teacher.run_id, assistant.run_id, student.run_id}

    records = {spec.run_id: read_record(store, spec.run_id) for spec in runs}
    assert records[teacher.run_id]["dependency"] is None
    assert records[assistant.run_id]["dependency"] == f"afterok:{records[teacher.run_id]['job_id']}"
    assert records[student.run_id]["dependency"] == f"afterok:{records[assistant.run_id]['job_id']}"

    states = cluster.wait_final(store, runs, timeout_s=300)
    assert {state.status for state in states.values()} == {"done"}
    ends = {run_id: cluster.sacct_times(record["job_id"]) for run_id, record in records.items()}
    assert ends[assistant.run_id][0] >= ends[teacher.run_id][1]
    assert ends[student.run_id][0] >= ends[assistant.run_id][1]
