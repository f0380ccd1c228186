"""A suite on the real test cluster: arrays, teacher-then-student, idempotent and race-free submission."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import torch

from kdbench.executors.slurm import read_record, slurm_states, submit_suite
from kdbench.results.store import ResultStore
from kdbench.suite import load_suite, plan
from kdbench.train import train_run

pytestmark = pytest.mark.slurm


def _submit_in_child(suite_path: str, root: str, profile, start, answers) -> None:
    runs = plan(load_suite(suite_path))
    start.wait(timeout=30)
    summary = submit_suite(runs, ResultStore(root), profile)
    answers.put((dict(summary.submitted), dict(summary.already_queued)))


def test_suite_trains_teachers_first_in_arrays_and_resubmits_nothing(cluster, tmp_path: Path) -> None:
    # Two teachers (one array), each with two KD students (seeds 0 and 1): one array per teacher.
    pairs = [{"teacher": "resnet8", "student": "resnet8", "self_distillation": True}, ["resnet14", "resnet8"]]
    suite_path, runs = cluster.suite(
        tmp_path, seeds=[0, 1], teachers={"resnet8": {}, "resnet14": {}}, pairs=pairs, methods={"KD": {"use": "kd"}}
    )
    store = ResultStore(tmp_path / "results")
    profile = cluster.profile()
    run_ids = {spec.run_id for spec in runs}
    teachers = [spec for spec in runs if spec.kind == "teacher"]

    # Two shells submit the same suite at the same moment: every run is submitted exactly once.
    context = multiprocessing.get_context("fork")
    start, answers = context.Event(), context.Queue()
    shells = [
        context.Process(target=_submit_in_child, args=(str(suite_path), str(store.root), profile, start, answers))
        for _ in range(2)
    ]
    for shell in shells:
        shell.start()
    start.set()
    outcomes = [answers.get(timeout=120) for _ in shells]
    for shell in shells:
        shell.join(timeout=30)
    submitted = [set(submitted) for submitted, _ in outcomes]
    assert submitted[0].isdisjoint(submitted[1]) and submitted[0] | submitted[1] == run_ids
    later = min(outcomes, key=lambda outcome: len(outcome[0]))
    assert set(later[1]) == run_ids - set(later[0])  # what it did not submit, it saw queued

    # Job arrays per dependency level: the teachers in one array; each teacher's students in an array
    # held with afterok on that teacher's own array task.
    records = {run_id: read_record(store, run_id) for run_id in run_ids}
    teacher_records = [records[spec.run_id] for spec in teachers]
    assert len({record["array_job_id"] for record in teacher_records}) == 1
    assert sorted(record["array_index"] for record in teacher_records) == [0, 1]
    for teacher in teachers:
        teacher_job = records[teacher.run_id]["job_id"]
        students = [records[spec.run_id] for spec in runs if spec.teacher_run == teacher.run_id]
        assert len(students) == 2 and len({record["array_job_id"] for record in students}) == 1
        assert sorted(record["array_index"] for record in students) == [0, 1]
        assert all(record["dependency"] == f"afterok:{teacher_job}" for record in students)

    states = cluster.wait_final(store, runs, timeout_s=240)
    assert {run_id: state.status for run_id, state in states.items()} == dict.fromkeys(run_ids, "done")
    for spec in runs:
        result = store.result(spec.run_id)
        assert result is not None and 0.0 <= result["top1_last"] <= 100.0
        if spec.teacher_run:  # started only after its own teacher had ended
            teacher_end = cluster.sacct_times(records[spec.teacher_run]["job_id"])[1]
            assert cluster.sacct_times(records[spec.run_id]["job_id"])[0] >= teacher_end

    again = submit_suite(runs, store, profile)
    assert again.submitted == {} and sorted(again.already_done) == sorted(run_ids)
    assert {state.status for state in slurm_states(store, runs).values()} == {"done"}

    # A SLURM run equals the same run trained here with the same thread count.
    teacher = teachers[0]
    local = ResultStore(tmp_path / "local")
    threads = torch.get_num_threads()
    torch.set_num_threads(profile.cpus_per_run)
    try:
        here = train_run(local.write_spec(teacher))
    finally:
        torch.set_num_threads(threads)
    there = store.result(teacher.run_id)
    assert (here["top1_last"], here["test_loss_last"]) == (there["top1_last"], there["test_loss_last"])
    assert _losses(local.run_dir(teacher.run_id)) == _losses(store.run_dir(teacher.run_id))


def _losses(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]
