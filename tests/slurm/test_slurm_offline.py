"""The SLURM executor's parts that need no cluster: profiles, sbatch scripts, job states, cancel filters.

Not marked ``slurm``: these run in the default test run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kdbench.cli.cancel import select_runs
from kdbench.cli.common import UserError
from kdbench.executors.profile import available_profiles, load_profile
from kdbench.executors.slurm import JobInfo, array_executor, state_from_job
from kdbench.results.store import ResultStore, atomic_write_json
from kdbench.suite import load_suite, plan
from tests.conftest import fabricated_result

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "kdbench" / "executors" / "slurm" / "profiles"


def test_shipped_profiles_load_as_written() -> None:
    assert {"local", "example-gpu"} <= set(available_profiles())
    for name in ("local", "example-gpu"):
        written = yaml.safe_load((PROFILES / f"{name}.yaml").read_text())
        profile = load_profile(name)
        for key, value in written.items():
            loaded = getattr(profile, key)
            assert (list(loaded) if key == "setup" else loaded) == value, key


def test_overrides_apply_on_top_and_merge_sbatch_options() -> None:
    profile = load_profile(PROFILES / "example-gpu.yaml", ["time_min=30", "sbatch.exclude=node7", "qos=high"])
    assert (profile.time_min, profile.qos) == (30, "high")
    assert profile.sbatch == {"mail-type": "FAIL", "exclude": "node7"}


def test_profile_errors_name_file_key_value_and_nearest_choices(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("partitoin: gpu\ngpus_per_run: -1\nmem_gb: lots\nsbatch: {array: 0-3}\nsetup: 3\n")
    with pytest.raises(ValueError) as caught:
        load_profile(path, ["time_mins=5"])
    message = str(caught.value)
    assert str(path) in message
    assert "unknown key 'partitoin' (value 'gpu'). Valid keys, nearest first: partition," in message
    assert "unknown key 'time_mins' (from the command line) (value 5). Valid keys, nearest first: time_min," in message
    for bad in ("gpus_per_run: value -1", "mem_gb: value 'lots'", "sbatch: option(s) array", "setup: value 3"):
        assert bad in message


def test_unknown_profile_names_the_nearest_ones() -> None:
    with pytest.raises(ValueError, match="Unknown SLURM profile 'locl'.*Available: local"):
        load_profile("locl")
    with pytest.raises(ValueError, match="does not exist"):
        load_profile("nowhere/cluster.yaml")


def test_sbatch_script_carries_every_profile_setting(tmp_path: Path) -> None:
    profile = load_profile("example-gpu", ["account=lab", "constraint=a100", "mem_gb=1.5"])
    executor = array_executor(ResultStore(tmp_path), profile, "afterok:12_3")
    script = executor._make_submission_file_text("python -m train", "uid")
    for line in (
        "--partition=gpu",
        "--account=lab",
        "--constraint=a100",
        "--gpus-per-node=1",
        "--cpus-per-task=8",
        "--mem=1536M",
        "--time=240",
        "--signal=USR2@120",
        "--dependency=afterok:12_3",
        "--kill-on-invalid-dep=yes",
        "--mail-type=FAIL",
        "--job-name=kdbench",
    ):
        assert f"#SBATCH {line}\n" in script, line
    assert "module load cuda/12.1\nsource $HOME/venvs/kdbench/bin/activate" in script
    without = array_executor(ResultStore(tmp_path), load_profile("local"), None)._make_submission_file_text("x", "uid")
    assert "--dependency" not in without and "--kill-on-invalid-dep" not in without and "--gpus" not in without


@pytest.fixture
def tiny_runs(tmp_path: Path) -> list:
    document = {
        "name": "offline",
        "dataset": {"name": "synthetic", "num_classes": 4, "image_size": 8},
        "schedule": {"epochs": 1, "batch_size": 16, "lr": 0.05, "milestones": [1]},
        "seeds": [0, 1],
        "teachers": {"resnet8": {}},
        "pairs": [{"teacher": "resnet8", "student": "resnet8", "self_distillation": True}],
        "methods": {"Vanilla": {"use": "vanilla"}, "KD": {"use": "kd"}},
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(document))
    return plan(load_suite(path))


@pytest.mark.parametrize(
    ("job", "state", "active"),
    [
        (JobInfo("7", "PENDING", "Priority"), "pending", True),
        (JobInfo("7", "PENDING", "BeginTime", restarts=1), "requeued", True),
        (JobInfo("7", "RUNNING", "None"), "running", True),
        (JobInfo("7", "PENDING", "DependencyNeverSatisfied"), "blocked", True),
        (JobInfo("7", "CANCELLED", "None", in_queue=False), "cancelled", False),
        (JobInfo("7", "TIMEOUT", "None", in_queue=False), "failed", False),
        (
            JobInfo("7", "RUNNING", "None", in_queue=False),
            "interrupted",
            False,
        ),  # accounting says running, queue does not
        (JobInfo("7", "COMPLETED", "None", in_queue=False), "interrupted", False),  # ended without result.json
        (None, "lost", False),
    ],
)
def test_job_states_map_to_run_states(tiny_runs: list, tmp_path: Path, job, state: str, active: bool) -> None:
    store = ResultStore(tmp_path / "results")
    spec = tiny_runs[0]
    log = tmp_path / "7_0_log.err"
    log.write_text("line\n" * 40 + "Traceback: the last words\n")
    record = {"job_id": "7", "stderr": str(log)}
    store.write_spec(spec)
    seen = state_from_job(store, spec, record, job)
    assert (seen.status, seen.job_active) == (state, active)
    if state == "failed":
        assert seen.log_path == str(log) and seen.log_tail.endswith("the last words")
    atomic_write_json(store.run_dir(spec.run_id) / "result.json", fabricated_result(spec))
    assert state_from_job(store, spec, record, job).status == "done"  # the result decides, whatever SLURM says


def test_cancel_filters_select_and_reject_with_choices(tiny_runs: list) -> None:
    chosen = select_runs(tiny_runs, methods=["kd"], pairs=["ResNet8,resnet8"], seeds=[1])
    assert [(spec.method, spec.seed) for spec in chosen] == [("KD", 1)]
    teachers = select_runs(tiny_runs, methods=["Teacher"], pairs=[], seeds=[])
    assert [spec.kind for spec in teachers] == ["teacher"]
    with pytest.raises(UserError, match="--method KDD: not a method of this suite. Choices, nearest first: KD,"):
        select_runs(tiny_runs, methods=["KDD"], pairs=[], seeds=[])
    with pytest.raises(UserError, match="not a pair of this suite"):
        select_runs(tiny_runs, methods=[], pairs=["resnet20,resnet8"], seeds=[])
    with pytest.raises(UserError, match="--seed 7: not a seed of this suite. Choices: 0, 1"):
        select_runs(tiny_runs, methods=[], pairs=[], seeds=[7])
