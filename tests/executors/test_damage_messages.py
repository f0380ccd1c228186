"""Issue 13's messages say what was really done with a damaged file: a teacher's model.pt rebuilt from its
checkpoint or retrained (and from which epoch), a damaged checkpoint.pt announced in one plain line on
stderr (the fallback, or the restart from epoch 1, with each damaged file kept under its own name), and
runs whose result was rebuilt from a complete checkpoint counted apart from the trained ones. Each test:
the exit code, the message, no traceback, and the numbers of the run as a run never damaged gives them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from kdbench.cli import main
from kdbench.executors.training import train_under_lock
from kdbench.lifecycle import RunStatus
from kdbench.results.store import ResultStore
from kdbench.suite import load_suite, plan
from tests.conftest import tiny_suite
from tests.executors.test_damage_and_concurrency import numbers

#: three epochs: a run stopped after two has a checkpoint.pt (2 epochs) and a checkpoint.prev.pt (1 epoch)
THREE_EPOCHS = {"schedule": {"epochs": 3, "batch_size": 16, "lr": 0.05, "milestones": [2], "lr_decay": 0.1}}
#: the first sentence of what torch says of a truncated checkpoint
TRUNCATED = "PytorchStreamReader failed reading zip archive: failed finding central directory"


def run_cli(*arguments: str, workers: int = 1, quiet: bool = True) -> int:
    return main(["run", *arguments, *(["--quiet"] if quiet else []), "--workers", str(workers), "--no-report"])


def no_traceback(out: str, err: str) -> str:
    text = out + err
    assert "Traceback" not in text, text
    return text


def trained_suite(folder: Path, **changes) -> Path:
    folder.mkdir(parents=True)
    suite = folder / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite(**changes)))
    assert run_cli(str(suite), "--results-dir", str(folder / "results")) == 0
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny suite (teacher, Vanilla, KD; 2 epochs) trained once; tests copy it."""
    return trained_suite(tmp_path_factory.mktemp("two") / "suite")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny suite with three epochs, trained once without damage: the numbers every repair must give."""
    return trained_suite(tmp_path_factory.mktemp("three") / "suite", **THREE_EPOCHS)


def copy_of(trained: Path, tmp_path: Path) -> tuple[Path, ResultStore, dict]:
    shutil.copytree(trained, tmp_path / "copy")
    suite = tmp_path / "copy" / "suite.yaml"
    runs = {spec.method or "Teacher": spec for spec in plan(load_suite(suite)).runs}
    return suite, ResultStore(tmp_path / "copy" / "results"), runs


def half_done(reference: Path, tmp_path: Path, methods: tuple[str, ...]) -> tuple[Path, ResultStore, dict]:
    """The three-epoch suite in a fresh results root, the runs of ``methods`` stopped after two epochs."""
    suite = tmp_path / "suite.yaml"
    shutil.copy(reference / "suite.yaml", suite)
    store = ResultStore(tmp_path / "results")
    runs = {spec.method or "Teacher": spec for spec in plan(load_suite(suite)).runs}
    for method in methods:
        store.write_spec(runs[method])
        outcome = train_under_lock(store.root, runs[method].run_id, stop_after_epochs=2)
        assert outcome.status == RunStatus.INTERRUPTED
    return suite, store, runs


def truncate(path: Path, keep: int = 200) -> bytes:
    whole = path.read_bytes()
    path.write_bytes(whole[:keep])
    return whole[:keep]


def weights(store: ResultStore, run_id: str) -> dict[str, torch.Tensor]:
    return torch.load(store.run_dir(run_id) / "model.pt")["model"]


def same_weights(mine: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> bool:
    return mine.keys() == theirs.keys() and all(torch.equal(mine[key], theirs[key]) for key in theirs)


# -- 1: a teacher's damaged model.pt says whether it was rebuilt or retrained ------------------------------


@pytest.mark.parametrize("left", ["no checkpoint", "checkpoint.pt damaged"])
def test_a_damaged_teacher_model_without_a_whole_checkpoint_says_it_was_retrained(
    trained: Path, tmp_path: Path, capsys, left: str
) -> None:
    suite, store, runs = copy_of(trained, tmp_path)
    teacher, kd = runs["Teacher"].run_id, runs["KD"].run_id
    model = store.run_dir(teacher) / "model.pt"
    original, teacher_before, kd_before = weights(store, teacher), numbers(store, teacher), numbers(store, kd)
    truncate(model, 300)
    if left == "no checkpoint":
        for name in ("checkpoint.pt", "checkpoint.prev.pt"):
            (store.run_dir(teacher) / name).unlink()
    else:  # checkpoint.prev.pt (epoch 1 of 2) is left: the teacher trains its second epoch again
        truncate(store.run_dir(teacher) / "checkpoint.pt")
    for name in ("result.json", "checkpoint.pt", "checkpoint.prev.pt", "metrics.jsonl"):
        (store.run_dir(kd) / name).unlink(missing_ok=True)
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    captured = capsys.readouterr()
    text = no_traceback(captured.out, captured.err)
    done = (
        "retrained from scratch: no checkpoint of it loads"
        if left == "no checkpoint"
        else "retrained from epoch 2: its checkpoint held 1 epoch"
    )
    assert f"repaired {kd}  teacher run {teacher}: {model} did not load; {done} (old file: model.damaged.pt)" in text
    assert "rebuilt from its checkpoint" not in text
    if left != "no checkpoint":
        assert f"kdbench: {teacher}: checkpoint.pt is damaged ({TRUNCATED})" in captured.err
    assert same_weights(weights(store, teacher), original)
    assert numbers(store, teacher) == teacher_before and numbers(store, kd) == kd_before
    assert (model.with_name("model.damaged.pt")).stat().st_size == 300


def test_a_damaged_teacher_model_with_a_whole_checkpoint_still_says_rebuilt(trained: Path, tmp_path: Path, capsys):
    suite, store, runs = copy_of(trained, tmp_path)
    teacher, kd = runs["Teacher"].run_id, runs["KD"].run_id
    model = store.run_dir(teacher) / "model.pt"
    truncate(model, 300)
    (store.run_dir(kd) / "result.json").unlink()
    (store.run_dir(kd) / "checkpoint.pt").unlink()
    (store.run_dir(kd) / "checkpoint.prev.pt").unlink()
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    text = no_traceback(*capsys.readouterr())
    assert f"{model} did not load; rebuilt from its checkpoint, which holds every epoch (old file" in text
    assert "retrained" not in text


# -- 2: a damaged checkpoint.pt of a half-done run: one plain line on stderr -------------------------------


@pytest.mark.parametrize("quiet", [True, False])
def test_a_truncated_checkpoint_says_so_in_one_line_and_resumes_from_the_one_before(
    reference: Path, tmp_path: Path, capsys, quiet: bool
) -> None:
    suite, store, runs = half_done(reference, tmp_path, ("Teacher",))
    teacher = runs["Teacher"].run_id
    checkpoint = store.run_dir(teacher) / "checkpoint.pt"
    damaged = truncate(checkpoint)
    assert run_cli(str(suite), "--results-dir", str(store.root), quiet=quiet) == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    line = (
        f"kdbench: {teacher}: checkpoint.pt is damaged ({TRUNCATED}); kept as checkpoint.damaged.pt; "
        "resuming from checkpoint.prev.pt at epoch 2 (1 epoch done)"
    )
    # a line of its own: any progress bar on the terminal (stderr) is cleared before it ("\r" then the line)
    assert [row.split("\r")[-1] for row in err.split("\n")].count(line) == 1, err
    assert "Warning" not in err and "train.py:" not in err
    assert (checkpoint.with_name("checkpoint.damaged.pt")).read_bytes() == damaged
    done = ResultStore(reference / "results")
    for spec in runs.values():
        assert numbers(store, spec.run_id) == numbers(done, spec.run_id), spec.method
    assert same_weights(weights(store, teacher), weights(done, teacher))


def test_both_checkpoints_damaged_are_kept_apart_and_training_restarts_from_epoch_1(
    reference: Path, tmp_path: Path, capsys
) -> None:
    suite, store, runs = half_done(reference, tmp_path, ("Vanilla",))
    vanilla = runs["Vanilla"].run_id
    checkpoint = store.run_dir(vanilla) / "checkpoint.pt"
    newest, older = truncate(checkpoint), truncate(checkpoint.with_name("checkpoint.prev.pt"), 0)
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    out, err = capsys.readouterr()
    no_traceback(out, err)
    assert (
        f"kdbench: {vanilla}: checkpoint.pt is damaged ({TRUNCATED}); kept as checkpoint.damaged.pt; "
        "checkpoint.prev.pt is damaged (the file is empty); kept as checkpoint.prev.damaged.pt; "
        "no checkpoint left that loads: training restarts from epoch 1\n"
    ) in err
    assert err.count("kdbench: ") == 1 and "Warning" not in err
    assert checkpoint.with_name("checkpoint.damaged.pt").read_bytes() == newest
    assert checkpoint.with_name("checkpoint.prev.damaged.pt").read_bytes() == older
    assert "3 trained, 0 already done" in out
    done = ResultStore(reference / "results")
    assert numbers(store, vanilla) == numbers(done, vanilla)
    assert same_weights(weights(store, vanilla), weights(done, vanilla))


def test_a_worker_process_says_it_on_the_terminal_too(reference: Path, tmp_path: Path, capfd) -> None:
    """With --workers 2 the run trains in a worker process: its line reaches the same stderr (the file
    descriptor the worker inherits), once."""
    suite, store, runs = half_done(reference, tmp_path, ("Teacher", "Vanilla"))
    vanilla = runs["Vanilla"].run_id
    truncate(store.run_dir(vanilla) / "checkpoint.pt")
    capfd.readouterr()
    assert run_cli(str(suite), "--results-dir", str(store.root), workers=2) == 0
    out, err = capfd.readouterr()
    no_traceback(out, err)
    line = (
        f"kdbench: {vanilla}: checkpoint.pt is damaged ({TRUNCATED}); kept as checkpoint.damaged.pt; "
        "resuming from checkpoint.prev.pt at epoch 2 (1 epoch done)\n"
    )
    assert err.count(line) == 1 and err.count("kdbench: ") == 1, err
    done = ResultStore(reference / "results")
    for spec in runs.values():
        assert numbers(store, spec.run_id) == numbers(done, spec.run_id), spec.method


# -- 3: runs rebuilt from their checkpoint are not counted as trained ------------------------------------


def test_results_rebuilt_from_their_checkpoint_are_counted_as_rebuilt_not_trained(
    trained: Path, tmp_path: Path, capsys
) -> None:
    suite, store, runs = copy_of(trained, tmp_path)
    before = {method: numbers(store, spec.run_id) for method, spec in runs.items()}
    for spec in runs.values():
        truncate(store.run_dir(spec.run_id) / "result.json", 100)
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    out = no_traceback(*capsys.readouterr())
    assert "0 trained, 3 rebuilt, 0 already done, 0 failed" in out
    assert "3 run(s) rebuilt: their checkpoint held every epoch, so only their result was written again" in out
    for spec in runs.values():
        assert f"repaired {spec.run_id}" in out
    assert out.count("rebuilt from its checkpoint (no epoch trained)") == 3
    assert {method: numbers(store, spec.run_id) for method, spec in runs.items()} == before


def test_trained_rebuilt_and_done_runs_are_each_counted_once(trained: Path, tmp_path: Path, capsys) -> None:
    suite, store, runs = copy_of(trained, tmp_path)
    kd, vanilla = runs["KD"].run_id, runs["Vanilla"].run_id
    before = {run_id: numbers(store, run_id) for run_id in (kd, vanilla)}
    truncate(store.run_dir(kd) / "result.json", 100)  # rebuilt: its checkpoint holds both epochs
    (store.run_dir(vanilla) / "result.json").write_text("")  # retrained: its checkpoints are gone
    for name in ("checkpoint.pt", "checkpoint.prev.pt", "metrics.jsonl"):
        (store.run_dir(vanilla) / name).unlink()
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    out = no_traceback(*capsys.readouterr())
    assert "1 trained, 1 rebuilt, 1 already done, 0 failed" in out and "1 run(s) rebuilt" in out
    assert "retrained (no checkpoint)" in out and out.count("rebuilt from its checkpoint (no epoch trained)") == 1
    assert {run_id: numbers(store, run_id) for run_id in (kd, vanilla)} == before
