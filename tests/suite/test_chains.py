"""Chains of distillation (TAKD) and teachers trained with a method (subclass distillation): suites,
plans, the local executor (order, a failed link blocks the rest with the reason), SLURM levels."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kdbench.cli import main
from kdbench.executors.local import run_local
from kdbench.executors.slurm.submission import dependency_levels
from kdbench.results.store import ResultStore
from kdbench.suite import SuiteError, load_suite, plan
from tests.conftest import tiny_suite

SUITES = Path(__file__).resolve().parents[2] / "suites"


def write(tmp_path: Path, **document) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def chain_suite(tmp_path: Path, **changes) -> Path:
    document = tiny_suite(
        teachers={"resnet14": {}},
        chains={"TAKD": {"models": ["resnet14", "resnet8", "resnet8"], "method": {"use": "kd"}}},
    )
    document.pop("pairs", None)
    document.pop("methods", None)
    document.update(changes)
    return write(tmp_path, **document)


def test_the_takd_suites_chain_their_links_through_the_teachers_run_id() -> None:
    for name, assistant in (("takd-cifar100", "resnet20"), ("takd-cifar10", "resnet14"), ("takd-digits", "resnet14")):
        runs = plan(load_suite(SUITES / f"{name}.yaml"))
        teacher = next(spec for spec in runs if spec.kind == "teacher")
        links = [spec for spec in runs if spec.method == "TAKD"]
        seeds = sorted({spec.seed for spec in links})
        for seed in seeds:
            first, second = [spec for spec in links if spec.seed == seed]
            assert (first.teacher, first.student, first.teacher_run) == (teacher.student, assistant, teacher.run_id)
            assert (second.teacher, second.student, second.teacher_run) == (assistant, "resnet8", first.run_id)
            assert first.pair == (teacher.student, assistant) and second.pair == (teacher.student, "resnet8")
        # the direct KD and the student from scratch beside the chain, in the same column
        assert {spec.method for spec in runs if spec.pair == (teacher.student, "resnet8")} == {"KD", "Vanilla", "TAKD"}


def test_a_links_id_changes_with_every_link_before_it(tmp_path: Path) -> None:
    base = plan(load_suite(chain_suite(tmp_path)))
    hotter = plan(load_suite(chain_suite(tmp_path), ["chains.TAKD.method.kd.temperature=8"]))
    assert [s.run_id for s in base if s.kind == "teacher"] == [s.run_id for s in hotter if s.kind == "teacher"]
    assert not {s.run_id for s in base if s.kind == "student"} & {s.run_id for s in hotter if s.kind == "student"}


@pytest.mark.parametrize(
    ("chains", "message"),
    [
        ({"TAKD": {"models": ["resnet110", "resnet8"]}}, "chains.TAKD.models[0]: the chain's first teacher"),
        ({"TAKD": {"models": ["resnet14"]}}, "chains.TAKD.models: expected a list of at least two"),
        (
            {"TAKD": {"models": ["resnet14", "resnet8", "resnet8"], "method": [{"use": "kd"}]}},
            "one method per link (2)",
        ),
        ({"TAKD": {"models": ["resnet14", "resnet9"]}}, "resnet9"),
        ({"TAKD": {"models": ["resnet14", "resnet8"], "teacher": "x"}}, "chains.TAKD"),
    ],
)
def test_chain_mistakes_are_named(tmp_path: Path, chains: dict, message: str) -> None:
    with pytest.raises(SuiteError) as error:
        load_suite(chain_suite(tmp_path, chains=chains))
    assert message in str(error.value)


def test_teacher_methods_are_checked(tmp_path: Path) -> None:
    for teachers, message in [
        ({"resnet14": {"method": "subclass_teachr"}}, "subclass_teacher"),
        ({"resnet14": {"method": "kd"}}, "needs none"),
        ({"resnet14": {"method": "subclass_teacher", "subclass": 3}}, "subclasses"),
        ({"resnet14": {"method": "subclass_teacher", "subclasses": 0}}, "at least 1"),
    ]:
        with pytest.raises(SuiteError) as error:
            load_suite(chain_suite(tmp_path, teachers=teachers))
        assert message in str(error.value), str(error.value)


def test_a_subclass_student_gets_its_teachers_subclasses_and_kd_its_plain_head() -> None:
    runs = plan(load_suite(SUITES / "subclass-mnist-binary.yaml"))
    teacher = next(spec for spec in runs if spec.kind == "teacher")
    assert teacher.terms[0][0] == "subclass_teacher" and teacher.terms[0][1]["subclasses"] == 5
    subclass = [spec for spec in runs if spec.method == "Subclass"]
    assert subclass and all(dict(spec.terms)["subclass"]["subclasses"] == 5 for spec in subclass)
    assert all(spec.teacher_run == teacher.run_id for spec in runs if spec.method in ("Subclass", "KD"))
    multi = plan(load_suite(SUITES / "subclass-mnist.yaml"))
    assert {dict(spec.terms)["subclass"]["subclasses"] for spec in multi if spec.method == "Subclass"} == {2}


def test_dependency_levels_order_a_chain() -> None:
    runs = [spec for spec in plan(load_suite(SUITES / "takd-digits.yaml")) if spec.kind == "student"]
    levels = dependency_levels(runs)
    assert [len(level) for level in levels] == [6, 2]  # KD, Vanilla and the assistants; then the chain's students
    assert all(spec.student == "resnet8" and spec.method == "TAKD" for spec in levels[1])


def test_a_chain_trains_in_order_locally_and_a_failed_link_blocks_the_rest(tmp_path: Path, capsys) -> None:
    runs = plan(load_suite(chain_suite(tmp_path)))
    store = ResultStore(tmp_path / "results")
    summary = run_local(runs, store, device="cpu", progress=False, log=lambda _: None)
    assert summary.exit_code == 0 and len(summary.trained) == 3
    student = runs[-1]
    assert store.result(student.run_id)["teacher_weights"].endswith(f"{runs[1].run_id}/model.pt")

    # the assistant fails (its teacher's weights vanish): the student is blocked, naming why
    failing = plan(load_suite(chain_suite(tmp_path), ["chains.TAKD.method.kd.temperature=2"]))
    (store.root / "runs" / failing[0].run_id / "model.pt").unlink()
    lines: list[str] = []
    summary = run_local(failing, store, device="cpu", progress=False, log=lines.append)
    assert summary.failed == [failing[1].run_id] and summary.blocked == [failing[2].run_id]
    blocked = next(line for line in lines if failing[2].run_id in line)
    assert "blocked" in blocked and f"its teacher run {failing[1].run_id} is failed" in blocked

    # kdbench status says where the chain stands, and why its last link is blocked
    path = str(tmp_path / "suite.yaml")
    assert main(["status", path, "--results-dir", str(store.root), "chains.TAKD.method.kd.temperature=2"]) == 1
    out = capsys.readouterr().out
    assert "chain TAKD seed 0: resnet14 done -> resnet8 failed -> resnet8 blocked" in out
    assert f"teacher run {failing[1].run_id} failed" in out


def choose_suite(tmp_path: Path, **changes) -> Path:
    chains = {"TAKD": {"models": ["resnet32", {"choose": ["resnet20", "resnet14"]}, "resnet8"]}}
    return chain_suite(tmp_path, teachers={"resnet32": {}}, seeds=[0, 1], chains=chains, **changes)


def test_takds_rule_chooses_the_assistant_closest_to_the_mean_of_teacher_and_student(tmp_path: Path) -> None:
    suite = load_suite(choose_suite(tmp_path))
    waiting = plan(suite)
    assert not [spec for spec in waiting if spec.method == "TAKD"]  # the chain waits for the choice
    assert "once the teacher and the models trained from scratch finished" in waiting.notes[0]
    needed = {spec.run_id: spec for spec in waiting.runs if spec.run_id in waiting.choice_runs}
    assert len(needed) == 1 + 3 * 2  # the teacher; two candidates and the student from scratch, two seeds
    scratch = {"resnet20": [80.0, 82.0], "resnet14": [76.0, 77.0], "resnet8": [70.0, 71.0]}
    finished = {}
    for run_id, spec in needed.items():
        finished[run_id] = 90.0 if spec.kind == "teacher" else scratch[spec.student][spec.seed]
    # target (90 + 70.5) / 2 = 80.25: resnet20 (81.0) is 0.75 away, resnet14 (76.5) 3.75
    chosen = plan(suite, finished)
    links = [spec for spec in chosen if spec.method == "TAKD"]
    assert {spec.student for spec in links if spec.teacher == "resnet32"} == {"resnet20"}
    assert {spec.teacher for spec in links if spec.student == "resnet8"} == {"resnet20"}
    assert "assistant resnet20" in chosen.notes[0] and "closest to 80.25" in chosen.notes[0]
    assert "resnet14 76.50" in chosen.notes[0]


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (["resnet32", {"choose": ["resnet20"]}, "resnet8"], "expected two or more model names"),
        (["resnet32", {"choose": ["resnet20", "resnet21"]}, "resnet8"], "resnet21"),
        (
            ["resnet32", {"choose": ["resnet20", "resnet14"]}, {"choose": ["resnet8", "resnet14"]}, "resnet8"],
            "at most one",
        ),
    ],
)
def test_choice_mistakes_are_named(tmp_path: Path, models: list, message: str) -> None:
    with pytest.raises(SuiteError) as error:
        load_suite(chain_suite(tmp_path, teachers={"resnet32": {}}, chains={"TAKD": {"models": models}}))
    assert message in str(error.value)
