"""Every user mistake a careless or hostile user made (issue 13), at the command line: exit 2, a message
naming the key, the bad value and what is allowed, and no traceback. One table; add a row per case.

A row is (id, suite, overrides, expected fragment of the message). ``suite`` is a change to the tiny
suite (a dict merged into it), or raw file content (``str``/``bytes``) for what YAML itself refuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kdbench.cli import main
from tests.conftest import tiny_suite

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)
SELF = {"teacher": "resnet8", "student": "resnet8", "self_distillation": True}

CASES: list[tuple[str, Any, list[str], str]] = [
    # names become folders: nothing may escape the results root
    ("name-escapes", {"name": "../../ESCAPED"}, [], "is not a safe name"),
    ("name-absolute", {"name": "/tmp/elsewhere"}, [], "is not a safe name"),
    ("name-300-chars", {"name": "x" * 300}, [], "(300 characters)"),
    ("name-nul", {"name": "a\x00b"}, [], "is not a safe name"),
    # the file itself
    ("yaml-bomb", BOMB, [], "expands to more than"),
    ("deep-nesting", "seeds: " + "[" * 20_000 + "]" * 20_000 + "\n", [], "nested"),
    ("not-utf8", b"name: caf\xe9\n", [], "not UTF-8"),
    ("duplicate-top-level-key", "name: a\nname: b\n", [], "key 'name' appears twice"),
    # YAML 1.1 reads 1e-3 as a string: every float spelling is a float
    ("float-spelling-ok-but-lr-zero", {}, ["schedule.lr=0e0"], "schedule.lr: must be > 0, got 0.0"),
    # parameter ranges
    ("kd-temperature-zero", {"methods": {"KD": {"use": "kd", "kd": {"temperature": 0}}}}, [], "must be > 0"),
    ("kd-temperature-nan", {}, ["methods.KD.kd.temperature=.nan"], "expected a finite number"),
    ("kd-weight-negative", {}, ["methods.KD.kd.weight=-1"], "methods.KD.kd.weight: must be >= 0"),
    ("ce-weight-negative", {}, ["methods.KD.ce_weight=-0.5"], "methods.KD.ce_weight: must be >= 0"),
    ("lr-infinite", {}, ["schedule.lr=.inf"], "schedule.lr: expected a finite number"),
    ("momentum-one", {}, ["schedule.momentum=1"], "schedule.momentum: must be < 1"),
    ("nesterov-without-momentum", {}, ["schedule.momentum=0", "schedule.nesterov=true"], "needs momentum > 0"),
    ("milestones-negative", {"schedule": {"epochs": 3, "milestones": [-1]}}, [], "counted from 1"),
    ("milestones-out-of-order", {"schedule": {"epochs": 9, "milestones": [5, 2]}}, [], "strictly increasing"),
    ("milestones-beyond-last-epoch", {"schedule": {"epochs": 3, "milestones": [5]}}, [], "beyond the last epoch"),
    (
        "srkd-reset-stages-beyond-the-model",
        {"methods": {"SRKD": {"use": "srkd", "reset_stages": 7}}},
        [],
        "applies to no pair",
    ),
    # the suite's structure
    ("same-model-pair-undeclared", {"pairs": [["resnet8", "resnet8"]]}, [], "for self-distillation say so"),
    ("duplicate-pair", {"pairs": [SELF, SELF]}, [], "appears twice"),
    ("empty-pairs", {"pairs": []}, [], "expected a non-empty list"),
    ("exclude-unknown-model", {"excludes": [{"pair": ["resnet8", "resnet9000"]}]}, [], "Unknown model 'resnet9000'"),
    ("exclude-one-model-pair", {"excludes": [{"pair": ["resnet8"]}]}, [], "expected [teacher, student]"),
    ("exclude-unknown-label", {"excludes": [{"method": "KDD"}]}, [], "Unknown method label 'KDD'. Did you mean 'KD'?"),
    (
        "exclude-unknown-pair",
        {
            "teachers": {"resnet8": {}, "resnet14": {}},
            "pairs": [SELF, ["resnet14", "resnet8"]],
            "excludes": [{"pair": ["resnet14", "resnet14"]}],
        },
        [],
        "is not a pair of the suite",
    ),
    ("unused-teacher", {"teachers": {"resnet8": {}, "resnet110": {}}}, [], "declared but no pair uses it"),
    ("slash-in-label", {"methods": {"KD/T4": {"use": "kd"}}}, [], "no '/'"),
    ("label-as-plain-string", {"methods": {"KD": "kd"}}, [], "write {use: kd}"),
    # suggestions and blame
    (
        "typo-model-number",
        {"teachers": {"resnet57": {}}, "pairs": [["resnet57", "resnet8"]]},
        [],
        "Did you mean 'resnet56'",
    ),
    ("override-typo-label", {}, ["methods.KDD.kd.temperature=2"], "Unknown method label 'KDD'. Did you mean 'KD'?"),
    ("override-blamed-on-command-line", {}, ["schedule.lr=-1"], "(set on the command line: schedule.lr=-1)"),
    (
        "override-of-a-list-blamed-on-command-line",
        {},
        ["pairs=[[resnet8,resnet57]]"],
        "(set on the command line: pairs=[['resnet8', 'resnet57']])",
    ),
    # found by the second audit (session 4)
    ("no-pairs", {"pairs": None}, [], "pairs: the suite has no pairs (and no chains): nothing would train"),
    ("no-methods", {"methods": None}, [], "methods: the suite has pairs but no methods"),
    (
        "milestones-beyond-with-another-override",
        {"schedule": {"epochs": 3, "milestones": [5]}},
        ["schedule.lr=0.1"],
        "beyond the last epoch",
    ),
    ("milestones-beyond-set-on-the-command-line", {}, ["schedule.milestones=[1,9]"], "beyond the last epoch"),
    ("exclude-matching-nothing", {"excludes": [{"seed": 7}]}, [], "excludes[0]: matches no cell of the suite"),
    ("exclude-naming-nothing", {"excludes": [{}]}, [], "excludes[0]: names no cell"),
    ("name-runs", {"name": "runs"}, [], "'runs' is taken"),
    ("teacher-path-nul", {"teachers": {"resnet8": {"checkpoint": "/tmp/a\x00b.pth"}}}, [], "holds a NUL byte"),
    (
        "teacher-path-part-too-long",
        {"teachers": {"resnet8": {"checkpoint": "/tmp/" + "c" * 300 + ".pth"}}},
        [],
        "a file or folder name has at most 255",
    ),
    ("teacher-folder-nul", {}, ['teacher_checkpoints="/tmp/a\\0b"'], "holds a NUL byte"),
    ("data-root-too-long", {}, ["dataset.root=/tmp/" + "d" * 300], "dataset.root:"),
    ("model-does-not-take-the-images", {"dataset": {"name": "mnist"}}, [], "do not fit model resnet8"),
    ("duplicate-nested-key-by-path", "methods:\n  KD: {use: kd}\n  KD: {use: kd}\n", [], "methods.KD: key 'KD'"),
    ("yaml-merge-key", "base: &b {epochs: 2}\nschedule:\n  <<: *b\n", [], "YAML merge keys (<<: *anchor)"),
    (
        "chain-label-slash",
        {
            "teachers": {"resnet8": {}, "resnet14": {}},
            "chains": {"TA/KD": {"models": ["resnet14", "resnet8", "resnet8"]}},
        },
        [],
        "chains.TA/KD: a label is a name",
    ),
    (
        "override-set-twice-noted-once",
        {},
        ["schedule.lr=-1", "schedule.lr=-2"],
        "got -2 (set on the command line: schedule.lr=-2)\n",
    ),
]


@pytest.mark.parametrize(("suite", "overrides", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_mistake_exits_2_with_a_clear_message(
    suite: Any, overrides: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "suite.yaml"
    if isinstance(suite, bytes):
        path.write_bytes(suite)
    elif isinstance(suite, str):
        path.write_text(suite)
    else:
        path.write_text(yaml.safe_dump(tiny_suite(**suite), allow_unicode=True))
    code = main(["plan", str(path), *overrides, "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err
    assert "Traceback" not in err and len(err) < 20_000
    assert not (tmp_path / "results").exists() and not (tmp_path.parent / "ESCAPED").exists()


@pytest.mark.parametrize("spelling", ["1e-3", "1E-3", "1.0e-3", ".001", "1e+0"])
def test_every_float_spelling_is_a_float(spelling: str, tmp_path: Path) -> None:
    from kdbench.suite import load_suite

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(tiny_suite()).replace("lr: 0.05", f"lr: {spelling}"))
    suite = load_suite(path, [f"schedule.weight_decay={spelling}"])
    assert suite.variants[0].schedule.lr == float(spelling) == suite.variants[0].schedule.weight_decay


def test_a_quick_try_may_cut_epochs_below_the_milestones(tmp_path: Path) -> None:
    """``schedule.epochs=2`` on a 180-epoch suite is deliberate: its later lr steps are never reached."""
    from kdbench.suite import load_suite

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(tiny_suite(schedule={"epochs": 9, "milestones": [5, 8]})))
    assert load_suite(path, ["schedule.epochs=2"]).variants[0].schedule.epochs == 2


#: (options, expected) for `kdbench report` on the tiny suite: refused before anything is written
REPORT_CASES = [
    pytest.param(["--name", "../../ESCAPED"], "--name '../../ESCAPED' is not a base name", id="report-name-escapes"),
    pytest.param(["--name", "/tmp/ESCAPED"], "is not a base name", id="report-name-absolute"),
    pytest.param(["--name", "n" * 300], "(300 characters) is not a base name", id="report-name-300-chars"),
    pytest.param(
        ["--out", "TMP/a-file/out"], "--out TMP/a-file/out: TMP/a-file, on its path,", id="report-out-under-a-file"
    ),
    pytest.param(["--out", "TMP/" + "o" * 300], "--out: ", id="report-out-too-long"),
]


@pytest.mark.parametrize(("options", "expected"), REPORT_CASES)
def test_report_refuses_a_place_it_must_not_write(options: list[str], expected: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "sub" / "suite.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(tiny_suite()))
    (tmp_path / "a-file").write_text("")
    options = [option.replace("TMP", str(tmp_path)) for option in options]
    before = sorted(p for p in tmp_path.parent.rglob("*") if "ESCAPED" in p.name)
    code = main(["report", str(path), "--results-dir", str(tmp_path / "sub" / "results"), "--no-plots", *options])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected.replace("TMP", str(tmp_path)) in err and "Traceback" not in err
    assert sorted(p for p in tmp_path.parent.rglob("*") if "ESCAPED" in p.name) == before


def test_report_that_cannot_write_its_folder_says_so(tmp_path: Path, capsys, monkeypatch) -> None:
    """A full disk or a folder made read-only after the checks: one message, exit 2, no half-written file."""
    import errno

    from kdbench.results import store

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(tiny_suite()))

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.tempfile, "mkstemp", full_disk)
    code = main(["report", str(path), "--results-dir", str(tmp_path / "results"), "--no-plots", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write" in err and "No space left on device" in err and "Traceback" not in err
    assert not list(tmp_path.glob("report*"))


def test_explain_refuses_a_device_this_machine_lacks(tmp_path: Path, capsys) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(tiny_suite()))
    code = main(["explain", str(path), "--results-dir", str(tmp_path / "results"), "--device", "tpu"])
    err = capsys.readouterr().err
    assert code == 2 and "'tpu' is not a device" in err and "Traceback" not in err


def test_a_quick_try_with_fewer_seeds_keeps_the_files_excludes(tmp_path: Path) -> None:
    """``seeds=[0]`` on a suite that excludes seed 2 is deliberate: the exclude then has nothing to leave out."""
    from kdbench.suite import load_suite

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(tiny_suite(seeds=[0, 1, 2], excludes=[{"method": "KD", "seed": 2}])))
    assert load_suite(path, ["seeds=[0]"]).variants[0].seeds == (0,)


def _teacher_file(tmp_path: Path, name: str, num_classes: int) -> str:
    import torch

    from kdbench.models import create_model
    from kdbench.models.checkpoint import save_crd_checkpoint

    torch.manual_seed(0)
    return str(save_crd_checkpoint(create_model(name, num_classes), tmp_path / f"{name}-{num_classes}.pth"))


NO_CUDA = pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="this machine has a GPU: the case is a mistake only without one"
)

#: (suite change, overrides, extra options, expected) for `kdbench run`: caught before any run directory
RUN_CASES = [
    pytest.param({}, [], ["--device", "tpu"], "'tpu' is not a device", id="device-tpu"),
    pytest.param({}, [], ["--device", "cuda"], "no CUDA GPU", id="device-cuda-without-gpu", marks=NO_CUDA),
    pytest.param(
        {}, ["training.precision=bf16"], [], "bf16 autocast applies on CUDA only", id="bf16-on-cpu", marks=NO_CUDA
    ),
    pytest.param(
        {"teachers": {"resnet8": {"checkpoint": "/nonexistent/t.pth"}}}, [], [], "not found", id="teacher-file-missing"
    ),
    pytest.param(
        {"teachers": {"resnet8": {}}},
        ["teacher_checkpoints=/nonexistent/folder"],
        [],
        "/nonexistent/folder/resnet8_vanilla/ckpt_epoch_240.pth",
        id="teacher-folder-missing",
    ),
    pytest.param(
        {"teachers": {"resnet8": {"checkpoint": "ARCH"}}}, [], [], "does not fit", id="teacher-file-other-architecture"
    ),
    pytest.param(
        {"pairs": [["resnet8", "tv_mobilenet_v2"]], "models": {"tv_mobilenet_v2": {"weights": "/nonexistent/w.pth"}}},
        [],
        [],
        "models.tv_mobilenet_v2.weights: no such file: /nonexistent/w.pth",
        id="backbone-weights-file-missing",
    ),
    pytest.param(
        {"teachers": {"resnet8": {"checkpoint": "CLASSES"}}},
        [],
        [],
        "the file has 100 classes",
        id="teacher-file-other-class-count",
    ),
    pytest.param(
        {"teachers": {"resnet8": {"checkpoint": "EMPTY"}}},
        [],
        [],
        "the file is empty (0 bytes)",
        id="teacher-file-empty",
    ),
    pytest.param(
        {"teachers": {"resnet8": {"checkpoint": "GARBAGE"}}},
        [],
        [],
        "not a PyTorch checkpoint file",
        id="teacher-file-garbage",
    ),
    pytest.param(
        {"teachers": {"resnet8": {"checkpoint": "FOLDER"}}},
        [],
        [],
        "is a folder, not a checkpoint",
        id="teacher-folder",
    ),
    # the results root: a regular file on its path (TMP: the test's folder, holding a file named a-file)
    pytest.param({}, [], ["--results-dir", "TMP/a-file"], "is a regular file, not a", id="results-dir-is-a-file"),
    pytest.param(
        {}, [], ["--results-dir", "TMP/a-file/results"], "TMP/a-file, on its path,", id="results-dir-under-a-file"
    ),
    pytest.param({}, [], ["--executor", "slurm"], "--executor slurm needs --profile", id="slurm-without-profile"),
    pytest.param({}, [], ["--device", ""], "'' is not a device", id="device-empty"),
    pytest.param({}, [], ["--device", "mps"], "no Apple GPU (MPS)", id="device-mps-without-one"),
    pytest.param(
        {},
        [],
        ["--results-dir", "TMP/" + "r" * 300],
        "a file or folder name has at most 255",
        id="results-dir-too-long",
    ),
]


@pytest.mark.parametrize(("suite", "overrides", "options", "expected"), RUN_CASES)
def test_run_refuses_before_creating_any_run_directory(
    suite: Any, overrides: list[str], options: list[str], expected: str, tmp_path: Path, capsys
) -> None:
    files = {"ARCH": _teacher_file(tmp_path, "resnet14", 4), "CLASSES": _teacher_file(tmp_path, "resnet8", 100)}
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "garbage.pth").write_bytes(bytes(range(7, 200)))
    (tmp_path / "folder.pth").mkdir()
    files.update({name.upper(): str(tmp_path / f"{name}.pth") for name in ("empty", "garbage", "folder")})
    for settings in (suite.get("teachers") or {}).values():
        if settings.get("checkpoint") in files:
            settings["checkpoint"] = files[settings["checkpoint"]]
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(tiny_suite(**suite)))
    results = tmp_path / "results"
    (tmp_path / "a-file").write_text("")
    options = [option.replace("TMP", str(tmp_path)) for option in options]
    code = main(["run", str(path), *overrides, "--results-dir", str(results), "--quiet", "--workers", "1", *options])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected.replace("TMP", str(tmp_path)) in err and "Traceback" not in err
    assert not (results / "runs").exists(), "a run directory was created before the check"
