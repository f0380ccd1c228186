"""A teacher file counts by its content, not its location (issue 13): moving it keeps its students'
ids, changing its bytes makes new runs, runs that older kdbench stored under the location-based id
are found (and linked by ``kdbench run``), a file that is not here is looked up by the content
recorded when kdbench run last read it, and a file changed after planning fails its run with why."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from kdbench.cli import main
from kdbench.lifecycle import RunStatus
from kdbench.models import create_model
from kdbench.models.checkpoint import save_crd_checkpoint
from kdbench.results.store import ResultStore
from kdbench.suite import load_suite, plan, run_id_of
from kdbench.suite.identity import location_run_id_of
from tests.conftest import tiny_suite


def run_cli(*arguments: str) -> int:
    return main(["run", *arguments, "--quiet", "--workers", "1", "--no-report"])


def teacher_file(path: Path, seed: int = 0) -> Path:
    import torch

    torch.manual_seed(seed)
    return save_crd_checkpoint(create_model("resnet8", 4), path)


def write(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def kd_suite(folder: Path, checkpoint: Path, **changes) -> Path:
    document = tiny_suite(teachers={"resnet8": {"checkpoint": str(checkpoint)}}, methods={"KD": {"use": "kd"}})
    document.update(changes)
    return write(folder / "suite.yaml", document)


def chain_suite(folder: Path, checkpoint: Path) -> Path:
    document = tiny_suite(
        teachers={"resnet14": {"checkpoint": str(checkpoint)}},
        chains={"TAKD": {"models": ["resnet14", "resnet8", "resnet8"], "method": {"use": "kd"}}},
    )
    del document["pairs"], document["methods"]
    return write(folder / "suite.yaml", document)


def trained_chain(tmp_path: Path, folder: str = "."):
    """A TAKD chain (resnet14 file -> resnet8 -> resnet8) trained once: (suite, store, first link, second link)."""
    import torch

    torch.manual_seed(0)
    checkpoint = save_crd_checkpoint(create_model("resnet14", 4), tmp_path / folder / "resnet14.pth")
    suite = chain_suite(tmp_path, checkpoint)
    store = ResultStore(tmp_path / "results")
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    first, second = plan(load_suite(suite)).runs
    return suite, store, first, second


def as_older_kdbench_stored(store: ResultStore, spec, teacher_legacy_id: str | None = None) -> Path:
    """Move a finished run to the id older kdbench gave it (its teacher file by location), as older kdbench
    would have written it: its records without the new fields, a chain's link naming its teacher's older id."""
    legacy = store.root / "runs" / spec.legacy_run_id
    os.replace(store.run_dir(spec.run_id), legacy)

    def older(data: dict) -> dict:
        data = {k: v for k, v in data.items() if k not in ("teacher_sha256", "legacy_run_id")}
        return {**data, "run_id": spec.legacy_run_id, "teacher_run": teacher_legacy_id or data["teacher_run"]}

    (legacy / "spec.yaml").write_text(yaml.safe_dump(older(yaml.safe_load((legacy / "spec.yaml").read_text()))))
    result = json.loads((legacy / "result.json").read_text())
    result.update(run_id=spec.legacy_run_id, spec=older(result["spec"]))
    (legacy / "result.json").write_text(json.dumps(result))
    return legacy


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KD student of a teacher file, trained once (2 epochs); tests copy the folder."""
    folder = tmp_path_factory.mktemp("teacher-file")
    teacher_file(folder / "mount-a" / "resnet8.pth")
    suite = kd_suite(folder, folder / "mount-a" / "resnet8.pth")
    assert run_cli(str(suite), "--results-dir", str(folder / "results")) == 0
    return folder


@pytest.fixture
def copy(trained: Path, tmp_path: Path) -> tuple[Path, ResultStore]:
    shutil.copytree(trained, tmp_path / "copy")
    folder = tmp_path / "copy"
    # the suite names the file by an absolute path: point it at the copy
    return kd_suite(folder, folder / "mount-a" / "resnet8.pth"), ResultStore(folder / "results")


def test_the_id_holds_the_files_content_not_its_location(tmp_path: Path) -> None:
    first = teacher_file(tmp_path / "a" / "resnet8.pth")
    (tmp_path / "b").mkdir()
    moved = Path(shutil.copy2(first, tmp_path / "b" / "resnet8.pth"))
    (at_a,) = plan(load_suite(kd_suite(tmp_path, first))).runs
    (at_b,) = plan(load_suite(kd_suite(tmp_path, moved))).runs
    assert at_a.run_id == at_b.run_id and at_a.teacher_checkpoint != at_b.teacher_checkpoint
    assert at_a.teacher_sha256 is not None and len(at_a.teacher_sha256) == 64
    # the location-based id older kdbench gave it is known, and differs for each location
    assert at_a.legacy_run_id == location_run_id_of(at_a.config()) != at_b.legacy_run_id
    teacher_file(tmp_path / "b" / "resnet8.pth", seed=1)  # other bytes at the same path: another run
    (changed,) = plan(load_suite(kd_suite(tmp_path, moved))).runs
    assert changed.run_id != at_b.run_id and changed.legacy_run_id == at_b.legacy_run_id


def test_the_spec_a_job_reads_back_keeps_its_id_and_older_id(tmp_path: Path) -> None:
    """spec.yaml and a SLURM job carry ``RunSpec.to_dict()``: the content hash and the older id travel with it."""
    (spec,) = plan(load_suite(kd_suite(tmp_path, teacher_file(tmp_path / "resnet8.pth")))).runs
    store = ResultStore(tmp_path / "results")
    back = type(spec).from_dict(yaml.safe_load((store.write_spec(spec) / "spec.yaml").read_text()))
    assert (back.run_id, back.teacher_sha256, back.legacy_run_id) == (
        spec.run_id,
        spec.teacher_sha256,
        spec.legacy_run_id,
    )


def test_a_missing_file_keeps_the_location_based_id(tmp_path: Path) -> None:
    (spec,) = plan(load_suite(kd_suite(tmp_path, tmp_path / "nowhere.pth"))).runs
    assert spec.teacher_sha256 is None and spec.legacy_run_id is None
    assert spec.run_id == run_id_of({k: v for k, v in spec.config().items() if k != "teacher_sha256"})
    (elsewhere,) = plan(load_suite(kd_suite(tmp_path, tmp_path / "elsewhere.pth"))).runs
    assert elsewhere.run_id != spec.run_id  # unknown content: the location is all the id can hold


def test_a_moved_teacher_file_does_not_retrain_its_students(copy, capsys) -> None:
    suite, store = copy
    folder = suite.parent
    os.replace(folder / "mount-a", folder / "mount-b")
    moved = kd_suite(folder, folder / "mount-b" / "resnet8.pth")
    capsys.readouterr()
    assert run_cli(str(moved), "--results-dir", str(store.root)) == 0
    out = capsys.readouterr().out
    assert "0 trained, 1 already done" in out


def test_runs_older_kdbench_stored_by_location_are_found_and_linked(copy, capsys) -> None:
    suite, store = copy
    (spec,) = plan(load_suite(suite)).runs
    top1 = store.result(spec.run_id)["top1_last"]
    legacy = as_older_kdbench_stored(store, spec)
    capsys.readouterr()
    # the first command that sees it links it: the file may move afterwards
    assert main(["status", str(suite), "--results-dir", str(store.root)]) == 0
    captured = capsys.readouterr()
    assert "1 done" in captured.out and "1 finished run(s) found under the id older kdbench gave them" in captured.err
    assert "linked as runs/<id> -> <older id>" in captured.err
    link = store.root / "runs" / spec.run_id
    assert link.is_symlink() and os.readlink(link) == legacy.name
    assert ResultStore(store.root).result(spec.run_id)["top1_last"] == top1
    folder = suite.parent
    os.replace(folder / "mount-a", folder / "mount-b")
    moved = kd_suite(folder, folder / "mount-b" / "resnet8.pth")
    assert run_cli(str(moved), "--results-dir", str(store.root)) == 0
    assert "0 trained, 1 already done" in capsys.readouterr().out
    assert main(["report", str(moved), "--results-dir", str(store.root), "--no-plots"]) == 0
    assert f"{top1:.2f}" in capsys.readouterr().out
    import pandas as pd

    assert pd.read_csv(store.root / "tiny" / "runs.csv", dtype=str)["stored_as"].tolist() == [
        legacy.name
    ]  # where it lies


def test_where_the_root_takes_no_link_the_run_is_found_all_the_same(copy, capsys, monkeypatch) -> None:
    suite, store = copy
    (spec,) = plan(load_suite(suite)).runs
    as_older_kdbench_stored(store, spec)

    def read_only(*_args, **_kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(os, "symlink", read_only)
    capsys.readouterr()
    assert main(["plan", str(suite), "--results-dir", str(store.root)]) == 0
    captured = capsys.readouterr()
    assert "1 done, 0 to train" in captured.out and "linked" not in captured.err
    assert not os.path.lexists(store.root / "runs" / spec.run_id)


def test_a_run_older_kdbench_trained_from_other_bytes_at_that_path_is_not_taken(copy, capsys) -> None:
    suite, store = copy
    (spec,) = plan(load_suite(suite)).runs
    legacy = as_older_kdbench_stored(store, spec)
    result = json.loads((legacy / "result.json").read_text())
    result["teacher_sha256"] = "0" * 64
    (legacy / "result.json").write_text(json.dumps(result))
    assert main(["plan", str(suite), "--results-dir", str(store.root)]) == 0
    assert "0 done, 1 to train" in capsys.readouterr().out


def test_students_are_found_when_the_teacher_file_is_not_here(copy, capsys) -> None:
    suite, store = copy
    (spec,) = plan(load_suite(suite)).runs
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0  # (the copy's path was never run)
    shutil.rmtree(suite.parent / "mount-a")  # results copied to a machine without the teacher files
    capsys.readouterr()
    assert main(["status", str(suite), "--results-dir", str(store.root)]) == 0
    captured = capsys.readouterr()
    assert "1 done" in captured.out
    assert "is not here; its students are looked up by the content recorded when kdbench run last read it" in (
        captured.err
    )
    # nothing to train: the missing file is no problem
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    assert "0 trained, 1 already done" in capsys.readouterr().out
    # a run still to train needs the file: refused before training, naming it
    assert run_cli(str(suite), "seeds=[0,1]", "--results-dir", str(store.root)) == 2
    err = capsys.readouterr().err
    assert "teachers.resnet8.checkpoint" in err and "not found" in err
    assert not (store.root / "runs" / spec.run_id).is_symlink()


def test_a_teacher_file_changed_after_planning_fails_its_run_and_says_why(tmp_path: Path) -> None:
    from kdbench.executors.training import train_under_lock

    path = teacher_file(tmp_path / "resnet8.pth")
    (spec,) = plan(load_suite(kd_suite(tmp_path, path))).runs
    store = ResultStore(tmp_path / "results")
    store.write_spec(spec)
    teacher_file(path, seed=1)  # replaced while the job waited in the queue
    train_under_lock(store.root, spec.run_id)
    assert store.status(spec.run_id) == RunStatus.FAILED
    failure = store.failure(spec.run_id)
    assert failure["stage"] == "teacher" and "changed since the suite was planned" in failure["reason"]


def test_a_chain_stored_by_location_is_found_link_by_link(tmp_path: Path, capsys) -> None:
    suite, store, first, second = trained_chain(tmp_path)
    assert second.teacher_run == first.run_id and second.legacy_run_id is not None
    # older kdbench: the first link by location, the second through the first's older id
    as_older_kdbench_stored(store, first)
    as_older_kdbench_stored(store, second, teacher_legacy_id=first.legacy_run_id)
    capsys.readouterr()
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    assert "0 trained, 2 already done" in capsys.readouterr().out
    assert all((store.root / "runs" / spec.run_id).is_symlink() for spec in (first, second))


def test_a_later_link_distilled_from_another_teacher_run_is_not_taken(tmp_path: Path, capsys) -> None:
    suite, store, first, second = trained_chain(tmp_path)
    as_older_kdbench_stored(store, first)
    as_older_kdbench_stored(store, second, teacher_legacy_id="0" * 12)  # a chain from other teacher bytes
    capsys.readouterr()
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    assert "1 trained, 1 already done" in capsys.readouterr().out


def test_a_found_run_with_a_damaged_result_is_repaired_in_place(copy, capsys) -> None:
    suite, store = copy
    (spec,) = plan(load_suite(suite)).runs
    before = {k: store.result(spec.run_id)[k] for k in ("top1_last", "top5_last", "test_loss_last")}
    legacy = as_older_kdbench_stored(store, spec)
    (legacy / "result.json").write_text((legacy / "result.json").read_text()[:50])
    capsys.readouterr()
    # the damaged record names no content, but its checkpoint does: found, then rebuilt from the checkpoint
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    out = capsys.readouterr().out
    assert f"repaired {spec.run_id}" in out and "FAILED" not in out
    assert {k: store.result(spec.run_id)[k] for k in before} == before
    assert (store.root / "runs" / spec.run_id).resolve() == legacy.resolve()


def test_an_unfinished_run_older_kdbench_left_is_found_by_its_checkpoint(tmp_path: Path, capsys) -> None:
    from kdbench.executors.training import train_under_lock

    path = teacher_file(tmp_path / "resnet8.pth")
    suite = kd_suite(tmp_path, path, schedule={**tiny_suite()["schedule"], "epochs": 3})
    (spec,) = plan(load_suite(suite)).runs
    store = ResultStore(tmp_path / "results")
    store.write_spec(spec)
    train_under_lock(store.root, spec.run_id, stop_after_epochs=1)
    legacy = store.root / "runs" / spec.legacy_run_id
    os.replace(store.run_dir(spec.run_id), legacy)
    assert main(["status", str(suite), "--results-dir", str(store.root)]) == 0
    assert "1 epoch(s) done" in capsys.readouterr().out
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    assert "1 trained" in capsys.readouterr().out
    assert store.result(spec.run_id)["epochs"] == 3 and (legacy / "result.json").exists()


def test_a_link_whose_folder_was_deleted_is_removed_and_the_run_trains_afresh(copy, capsys) -> None:
    suite, store = copy
    (spec,) = plan(load_suite(suite)).runs
    legacy = as_older_kdbench_stored(store, spec)
    assert main(["status", str(suite), "--results-dir", str(store.root)]) == 0
    shutil.rmtree(legacy)
    capsys.readouterr()
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    captured = capsys.readouterr()
    assert f"removed the link runs/{spec.run_id} -> {legacy.name}" in captured.err and "1 trained" in captured.out
    assert not (store.root / "runs" / spec.run_id).is_symlink()


def test_a_teacher_run_repaired_after_its_teacher_file_moved_loads_it_where_it_is(tmp_path: Path, capsys) -> None:
    """A chain's first link (a student of the file) has a damaged model.pt when its second link trains:
    it is rebuilt from its checkpoint, loading the file from where the suite says it is now."""
    _, store, _, _ = trained_chain(tmp_path, "a")
    os.replace(tmp_path / "a", tmp_path / "b")
    suite = chain_suite(tmp_path, tmp_path / "b" / "resnet14.pth")
    first, second = plan(load_suite(suite)).runs
    model = store.run_dir(first.run_id) / "model.pt"
    model.write_bytes(model.read_bytes()[:1000])
    shutil.rmtree(store.run_dir(second.run_id))
    capsys.readouterr()
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 0
    out = capsys.readouterr().out
    assert "1 trained, 1 already done" in out and "rebuilt from its checkpoint" in out and "FAILED" not in out


def test_run_stops_when_a_found_teacher_run_cannot_be_linked_for_its_students(tmp_path: Path, capsys, monkeypatch):
    suite, store, first, second = trained_chain(tmp_path)
    as_older_kdbench_stored(store, first)
    shutil.rmtree(store.run_dir(second.run_id))  # the second link is to train, from the first found by its older id

    def no_links(*_args, **_kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_links)
    capsys.readouterr()
    assert run_cli(str(suite), "--results-dir", str(store.root)) == 2
    err = capsys.readouterr().err
    assert f"the teacher run(s) {first.run_id} are stored under the id older kdbench gave them" in err
    assert "Traceback" not in err and not store.run_dir(second.run_id).exists()
