"""Several runs in one SLURM job (``runs_per_job`` > 1): packs, their resources and records, the packed job.

The tests not marked ``slurm`` need no cluster: a fake sbatch/squeue/scancel on PATH answers the
executor, and the packed job runs in this process on tiny runs. The ones marked ``slurm`` run packs on
the local test cluster (``pytest -m slurm``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from kdbench.executors.local import run_local
from kdbench.executors.profile import load_profile
from kdbench.executors.slurm import (
    PackedTrainJob,
    PackFailed,
    TrainJob,
    array_executor,
    cancel_runs,
    job_for,
    pack_runs,
    read_record,
    submit_suite,
)
from kdbench.results.store import ResultStore
from kdbench.suite import RunSpec, load_suite, plan
from kdbench.train import train_run
from tests.conftest import tiny_suite

REPO = Path(__file__).resolve().parents[2]

# --- without a cluster ------------------------------------------------------------------------------------

#: Stand-ins for the SLURM commands the executor calls. sbatch keeps each script and queues its tasks
#: (ids far above a test cluster's, in case one is up); squeue shows every queued task as pending.
FAKE_COMMANDS = {
    "sbatch": """
import re
script = Path(sys.argv[-1]).read_text()
counter = STATE / "next_id"
job_id = int(counter.read_text()) if counter.exists() else 990001
counter.write_text(str(job_id + 1))
(STATE / f"sbatch_{job_id}.sh").write_text(script)
array = re.search(r"^#SBATCH --array=0-(\\d+)", script, re.M)
tasks = [f"{job_id}_{index}" for index in range(int(array.group(1)) + 1)] if array else [str(job_id)]
with open(STATE / "queue", "a") as queue:
    queue.writelines(task + "\\n" for task in tasks)
print(f"Submitted batch job {job_id}")
""",
    "squeue": """
queue = STATE / "queue"
for task in queue.read_text().split() if queue.exists() else []:
    print(f"{task}|PENDING|Priority|0|")
""",
    "scancel": """
with open(STATE / "scancelled", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
""",
    "sacct": "",
    "srun": "",
}


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the fake SLURM commands first on PATH; the folder they keep their state in."""
    state, bin_dir = tmp_path / "fake-slurm", tmp_path / "fake-bin"
    state.mkdir()
    bin_dir.mkdir()
    for name, body in FAKE_COMMANDS.items():
        path = bin_dir / name
        head = f"#!{sys.executable}\nimport sys\nfrom pathlib import Path\nSTATE = Path({str(state)!r})\n"
        path.write_text(head + body)
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return state


def _two_teacher_suite(write_suite, **changes) -> list[RunSpec]:
    """Two teachers (resnet8, resnet14) with three KD students each: 8 runs."""
    document = tiny_suite(
        seeds=[0, 1, 2],
        teachers={"resnet8": {}, "resnet14": {}},
        pairs=[{"teacher": "resnet8", "student": "resnet8", "self_distillation": True}, ["resnet14", "resnet8"]],
        methods={"KD": {"use": "kd"}},
    )
    document.update(changes)
    return plan(load_suite(write_suite(document)))


def test_runs_go_in_packs_of_runs_per_job_in_order(write_suite) -> None:
    runs = _two_teacher_suite(write_suite)
    assert [[spec.run_id for spec in pack] for pack in pack_runs(runs[:5], 2)] == [
        [runs[0].run_id, runs[1].run_id],
        [runs[2].run_id, runs[3].run_id],
        [runs[4].run_id],
    ]
    assert pack_runs(runs[:3], 1) == [[runs[0]], [runs[1]], [runs[2]]]
    assert pack_runs(runs[:3], 8) == [list(runs[:3])]
    assert pack_runs([], 4) == []


def test_runs_per_job_must_be_a_positive_integer() -> None:
    assert load_profile("local", {"runs_per_job": 4}).runs_per_job == 4
    for bad in (0, -2, "two", 1.5, True):
        with pytest.raises(
            ValueError, match=f"runs_per_job: value {bad!r} must be an integer >= 1 \\(from the command line\\)"
        ):
            load_profile("local", {"runs_per_job": bad})


def test_a_packed_job_asks_for_cpus_and_memory_per_run_and_shares_its_gpus(tmp_path: Path) -> None:
    profile = load_profile("example-gpu", ["runs_per_job=4", "mem_gb=1.5"])
    script = array_executor(ResultStore(tmp_path), profile, None, pack_size=4)._make_submission_file_text("x", "uid")
    for line in ("--cpus-per-task=32", "--mem=6144M", "--gpus-per-node=1"):
        assert f"#SBATCH {line}\n" in script, line
    single = array_executor(ResultStore(tmp_path), profile, None)._make_submission_file_text("x", "uid")
    for line in ("--cpus-per-task=8", "--mem=1536M", "--gpus-per-node=1"):
        assert f"#SBATCH {line}\n" in single, line
    default_memory = load_profile("local", {"mem_gb": None, "runs_per_job": 2})
    assert "--mem" not in array_executor(ResultStore(tmp_path), default_memory, None, 2)._make_submission_file_text(
        "x", "u"
    )


def test_packs_are_array_tasks_and_every_run_records_its_pack(write_suite, fake_slurm: Path, tmp_path: Path) -> None:
    runs = _two_teacher_suite(write_suite)
    teachers = [spec for spec in runs if spec.kind == "teacher"]
    students = [spec for spec in runs if spec.kind == "student"]
    store = ResultStore(tmp_path / "results")
    summary = submit_suite(runs, store, load_profile("example-gpu", ["runs_per_job=2"]))

    # The two teachers are one pack, so one plain job; the six students share its dependency: three packs.
    assert [(size, dependency, tasks) for _, size, dependency, tasks in summary.arrays] == [
        (2, None, 1),
        (6, "afterok:990001", 3),
    ]
    assert "submitted 8 run(s) in 4 task(s) of 2 job array(s)" in summary.describe()
    assert "array 990002_[0-2]: 6 run(s) in 3 task(s), held until afterok:990001" in summary.describe()
    records = {spec.run_id: read_record(store, spec.run_id) for spec in runs}
    assert {records[spec.run_id]["job_id"] for spec in teachers} == {"990001"}
    assert records[teachers[0].run_id]["pack"] == [spec.run_id for spec in teachers]
    for index, pack in enumerate(pack_runs(students, 2)):
        for spec in pack:
            record = records[spec.run_id]
            assert record["job_id"] == f"990002_{index}" and record["array_index"] == index
            assert record["pack"] == [mate.run_id for mate in pack] and record["runs_per_job"] == 2
            assert record["dependency"] == "afterok:990001"
    script = (fake_slurm / "sbatch_990002.sh").read_text()
    for line in ("--array=0-2%3", "--cpus-per-task=16", "--mem=65536M", "--gpus-per-node=1"):
        assert f"#SBATCH {line}\n" in script, line

    # Submitting again finds every run queued, packs included.
    again = submit_suite(runs, store, load_profile("example-gpu", ["runs_per_job=2"]))
    assert again.submitted == {} and again.already_queued == {run_id: r["job_id"] for run_id, r in records.items()}

    # Cancelling one run of a pack cancels its job, so the other run of the pack stops too: said aloud.
    said: list[str] = []
    first, mate = pack_runs(students, 2)[0]
    assert cancel_runs(store, [first], log=said.append) == {first.run_id: "990002_0"}
    assert (fake_slurm / "scancelled").read_text().split() == ["990002_0"]
    assert len(said) == 1 and "job 990002_0" in said[0] and mate.run_id in said[0] and first.run_id not in said[0]


def test_one_run_per_job_submits_and_records_as_before(write_suite, fake_slurm: Path, tmp_path: Path) -> None:
    runs = _two_teacher_suite(write_suite)
    store = ResultStore(tmp_path / "results")
    summary = submit_suite(runs, store, load_profile("example-gpu"))
    # One student array per teacher task, one run per task.
    assert [(size, tasks) for _, size, _, tasks in summary.arrays] == [(2, 2), (3, 3), (3, 3)]
    assert summary.describe().startswith("submitted 8 runs in 3 job array(s);")
    record = read_record(store, runs[0].run_id)
    assert "pack" not in record and "runs_per_job" not in record
    assert "#SBATCH --cpus-per-task=8\n" in (fake_slurm / "sbatch_990001.sh").read_text()


def test_a_pack_of_one_trains_in_the_jobs_own_process(tmp_path: Path) -> None:
    # The last pack of a group may hold one run: it goes as a plain TrainJob, exactly as without packing.
    alone = job_for([str(tmp_path / "a")], "cuda", None)
    assert isinstance(alone, TrainJob) and alone.run_dir == str(tmp_path / "a") and alone.device == "cuda"
    pack = job_for([str(tmp_path / "a"), str(tmp_path / "b")], "cuda", None)
    assert isinstance(pack, PackedTrainJob) and pack.run_dirs == [str(tmp_path / "a"), str(tmp_path / "b")]


def _trained_here(specs: list[RunSpec], root: Path) -> dict[str, list[dict]]:
    store = ResultStore(root)
    for spec in specs:
        train_run(store.write_spec(spec))
    return {spec.run_id: _metrics(store.run_dir(spec.run_id)) for spec in specs}


def _metrics(run_dir: Path) -> list[dict]:
    """The run's epochs without their timings."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{key: value for key, value in json.loads(line).items() if key != "seconds"} for line in lines]


def test_packed_job_trains_its_runs_at_once_like_one_by_one(write_suite, tmp_path: Path) -> None:
    runs = plan(load_suite(write_suite(tiny_suite(seeds=[0, 1]))))
    teacher = next(spec for spec in runs if spec.kind == "teacher")
    vanilla = [spec for spec in runs if spec.method == "Vanilla"]
    pack = [teacher, *vanilla]
    store = ResultStore(tmp_path / "packed")
    run_dirs = [str(store.write_spec(spec)) for spec in pack]

    results = PackedTrainJob(run_dirs)()
    assert sorted(results) == sorted(spec.run_id for spec in pack)
    assert all(store.result(spec.run_id) == results[spec.run_id] for spec in pack)
    reference = _trained_here(pack, tmp_path / "one-by-one")
    assert {spec.run_id: _metrics(store.run_dir(spec.run_id)) for spec in pack} == reference

    # Requeued after a preemption: the same pack again; runs that are done return at once, untouched.
    delayed = PackedTrainJob(run_dirs).checkpoint()
    again = delayed.function
    assert isinstance(again, PackedTrainJob) and (again.run_dirs, again.device, again.data_root) == (
        run_dirs,
        None,
        None,
    )
    assert delayed.args == () and delayed.kwargs == {}
    before = {spec.run_id: (store.run_dir(spec.run_id) / "result.json").stat().st_mtime_ns for spec in pack}
    assert again() == results
    assert {spec.run_id: (store.run_dir(spec.run_id) / "result.json").stat().st_mtime_ns for spec in pack} == before


def test_packed_job_fails_naming_the_runs_that_failed_after_the_others_finish(write_suite, tmp_path: Path) -> None:
    runs = plan(load_suite(write_suite(tiny_suite())))
    kd = next(spec for spec in runs if spec.method == "KD")  # its teacher is never trained here: it must fail
    vanilla = next(spec for spec in runs if spec.method == "Vanilla")
    store = ResultStore(tmp_path / "results")
    job = PackedTrainJob([str(store.write_spec(spec)) for spec in (kd, vanilla)], device="cpu")
    with pytest.raises(PackFailed) as caught:
        job()
    message = str(caught.value)
    assert f"1 of 2 runs of this job did not finish ({kd.run_id})" in message
    assert "has not finished" in message and vanilla.run_id not in message
    failure = store.failure(kd.run_id)  # the one shape, as every other path writes it
    assert "has not finished" in failure["reason"] and failure["stage"] == "teacher"
    assert set(failure) == {"reason", "type", "stage", "time"}
    assert store.result(vanilla.run_id) is not None  # the pack waited for it


def test_checkpoint_resubmits_the_same_pack(tmp_path: Path) -> None:
    job = PackedTrainJob([tmp_path / "a", tmp_path / "b"], device="cuda", data_root="/data")
    delayed = job.checkpoint()
    assert isinstance(delayed.function, PackedTrainJob) and delayed.function is not job
    assert (
        delayed.function.__dict__
        == job.__dict__
        == {"run_dirs": [str(tmp_path / "a"), str(tmp_path / "b")], "device": "cuda", "data_root": "/data"}
    )


# --- on the test cluster ---------------------------------------------------------------------------------


def _two_teachers(cluster, directory: Path, **teacher_changes) -> tuple[list[RunSpec], list[RunSpec], list[RunSpec]]:
    """Digits: teachers resnet8 and resnet14 (one pack), a KD student of each (the next pack); runs, teachers,
    students."""
    teachers = {"resnet8": teacher_changes, "resnet14": {}}
    _, runs = cluster.suite(
        directory,
        teachers=teachers,
        pairs=[{"teacher": "resnet8", "student": "resnet8", "self_distillation": True}, ["resnet14", "resnet8"]],
        methods={"KD": {"use": "kd"}},
    )
    return (runs, [spec for spec in runs if spec.kind == "teacher"], [spec for spec in runs if spec.kind == "student"])


@pytest.mark.slurm
def test_packed_jobs_on_the_cluster_give_the_local_executors_numbers(cluster, tmp_path: Path) -> None:
    runs, teachers, students = _two_teachers(cluster, tmp_path)
    store = ResultStore(tmp_path / "results")
    profile = cluster.profile(runs_per_job=2)  # two runs of one CPU each: the whole 2-CPU node
    summary = submit_suite(runs, store, profile)
    assert [(size, tasks) for _, size, _, tasks in summary.arrays] == [(2, 1), (2, 1)]
    records = {spec.run_id: read_record(store, spec.run_id) for spec in runs}
    teacher_job = records[teachers[0].run_id]["job_id"]
    assert {records[spec.run_id]["job_id"] for spec in teachers} == {teacher_job}
    assert {records[spec.run_id]["dependency"] for spec in students} == {f"afterok:{teacher_job}"}
    student_job = records[students[0].run_id]["job_id"]
    assert records[students[1].run_id]["pack"] == [spec.run_id for spec in students]

    states = cluster.wait_final(store, runs, timeout_s=150)
    assert {state.status for state in states.values()} == {"done"}
    assert cluster.sacct_times(student_job)[0] >= cluster.sacct_times(teacher_job)[1]
    log = Path(records[teachers[0].run_id]["stdout"]).read_text()
    assert all(f"kdbench pack: done {spec.run_id}" in log for spec in teachers)

    local = ResultStore(tmp_path / "local")
    done = run_local(runs, local, progress=False, log=lambda line: None)
    assert sorted(done.trained) == sorted(spec.run_id for spec in runs)
    for spec in runs:
        assert _metrics(store.run_dir(spec.run_id)) == _metrics(local.run_dir(spec.run_id)), spec.run_id


@pytest.mark.slurm
def test_a_failed_teacher_fails_its_pack_and_the_other_students_go_again(cluster, tmp_path: Path) -> None:
    # resnet8's learning rate makes its loss non-finite at once; resnet14 trains normally in the same job.
    runs, teachers, students = _two_teachers(cluster, tmp_path, schedule={"lr": 1.0e30})
    failing, fine = teachers
    blocked = next(spec for spec in students if spec.teacher_run == failing.run_id)
    orphan = next(spec for spec in students if spec.teacher_run == fine.run_id)
    store = ResultStore(tmp_path / "results")
    profile = cluster.profile(runs_per_job=2)
    submit_suite(runs, store, profile)
    teacher_record = read_record(store, failing.run_id)

    states = cluster.wait_final(store, runs, timeout_s=120)
    assert states[failing.run_id].status == "failed" and "non-finite" in states[failing.run_id].detail
    assert states[fine.run_id].status == "done"  # the pack waited for it before failing
    assert states[blocked.run_id].status == "blocked"
    # Held afterok on the failed job: SLURM cancelled it although its own teacher is done.
    assert states[orphan.run_id].status == "cancelled"
    error_log = Path(teacher_record["stderr"]).read_text()
    assert "PackFailed" in error_log and f"did not finish ({failing.run_id})" in error_log

    again = submit_suite(runs, store, profile)
    assert set(again.submitted) == {orphan.run_id} and set(again.blocked) == {blocked.run_id}
    assert read_record(store, orphan.run_id)["dependency"] is None
    states = cluster.wait_final(store, runs, timeout_s=90)
    assert states[orphan.run_id].status == "done"


@pytest.mark.slurm
def test_a_preempted_pack_requeues_itself_and_its_runs_resume(cluster, tmp_path: Path) -> None:
    # Long enough to be preempted mid-run: about 10 s for resnet8, 20 s for resnet14 on one thread each.
    schedule = {"epochs": 40, "batch_size": 64, "lr": 0.05, "milestones": [6]}
    _, runs = cluster.suite(
        tmp_path,
        schedule=schedule,
        teachers={"resnet8": {}, "resnet14": {}},
        pairs=[{"teacher": "resnet8", "student": "resnet8", "self_distillation": True}, ["resnet14", "resnet8"]],
        methods={"KD": {"use": "kd"}},
    )
    teachers = [spec for spec in runs if spec.kind == "teacher"]
    store = ResultStore(tmp_path / "results")
    submit_suite(teachers, store, cluster.profile(runs_per_job=2))
    job_id = read_record(store, teachers[0].run_id)["job_id"]

    def epochs() -> dict[str, int]:
        paths = {spec.run_id: store.run_dir(spec.run_id) / "metrics.jsonl" for spec in teachers}
        return {run_id: len(path.read_text().splitlines()) if path.exists() else 0 for run_id, path in paths.items()}

    # SLURM's warning before the time limit (or a preemption), as submitit asks for it: the job's own process
    # checkpoints the pack and requeues it; the runs' processes ignore the signal and end with the job.
    cluster.wait_for("two epochs of each run", lambda: min(epochs().values()) >= 2, timeout_s=90, every_s=0.2)
    cluster.command("scancel", "--signal=USR2", job_id)
    cluster.wait_for("the requeued job to pend", lambda: cluster.squeue(job_id) == ("PENDING", "BeginTime"), 60)
    before = {spec.run_id: _metrics(store.run_dir(spec.run_id)) for spec in teachers}
    assert all(2 <= len(done) < schedule["epochs"] for done in before.values())
    # Skip the requeue delay, but not within the second of the requeue: slurmd refuses to launch a job again
    # with a credential issued in the same second as the one it revoked ("Job credential revoked").
    time.sleep(2)
    cluster.command("scontrol", "update", f"jobid={job_id}", "StartTime=now")

    states = cluster.wait_final(store, teachers, timeout_s=150)
    assert {state.status for state in states.values()} == {"done"}
    local = ResultStore(tmp_path / "local")
    run_local(teachers, local, progress=False, log=lambda line: None)
    for spec in teachers:
        after = _metrics(store.run_dir(spec.run_id))
        assert after[: len(before[spec.run_id])] == before[spec.run_id]  # resumed, not restarted
        assert after == _metrics(local.run_dir(spec.run_id))
