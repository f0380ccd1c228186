"""Suite loading, validation (every error class, all at once) and planning."""

from __future__ import annotations

import pytest
import yaml

from kdbench.methods import METHODS
from kdbench.suite import SuiteError, load_suite, plan
from tests.conftest import tiny_suite

SELF_PAIR = {"teacher": "resnet8", "student": "resnet8", "self_distillation": True}


def problems_of(write_suite, document: dict, overrides=()) -> str:
    with pytest.raises(SuiteError) as caught:
        load_suite(write_suite(document), overrides)
    return str(caught.value)


def test_plan_puts_teachers_first_and_expands_pairs_methods_seeds(write_suite) -> None:
    suite = load_suite(write_suite(tiny_suite(seeds=[0, 1, 2])))
    runs = plan(suite)
    assert [r.kind for r in runs] == ["teacher"] + ["student"] * 6
    assert [(r.method, r.seed) for r in runs[1:]] == [(m, s) for m in ("Vanilla", "KD") for s in (0, 1, 2)]
    kd = [r for r in runs if r.method == "KD"]
    assert all(r.teacher_run == runs[0].run_id for r in kd)
    assert all(r.teacher_run is None for r in runs if r.method == "Vanilla")


def test_run_ids_are_stable_and_depend_on_every_resolved_setting(write_suite) -> None:
    first = [r.run_id for r in plan(load_suite(write_suite(tiny_suite())))]
    again = [r.run_id for r in plan(load_suite(write_suite(tiny_suite())))]
    assert first == again
    assert len(first[0]) == 12
    changed_lr = [r.run_id for r in plan(load_suite(write_suite(tiny_suite()), ["schedule.lr=0.1"]))]
    assert set(changed_lr).isdisjoint(first)  # the teacher changes too, so every student does
    changed_kd = plan(load_suite(write_suite(tiny_suite()), ["methods.KD.kd.temperature=2"]))
    assert [r.run_id for r in changed_kd][:2] == first[:2] and changed_kd[2].run_id != first[2]


def test_defaults_are_part_of_the_id_and_where_data_lives_is_not(write_suite) -> None:
    explicit = tiny_suite(methods={"KD": {"use": "kd", "kd": {"temperature": 4.0, "weight": 0.9}}})
    implicit = tiny_suite(methods={"KD": {"use": "kd"}})
    assert [r.run_id for r in plan(load_suite(write_suite(explicit)))] == [
        r.run_id for r in plan(load_suite(write_suite(implicit)))
    ]
    moved = [r.run_id for r in plan(load_suite(write_suite(implicit), ["dataset.root=/elsewhere"]))]
    assert moved == [r.run_id for r in plan(load_suite(write_suite(implicit)))]


def test_overrides_apply_before_planning(write_suite) -> None:
    runs = plan(load_suite(write_suite(tiny_suite(seeds=[0, 1])), ["schedule.epochs=5", "seeds=[3]"]))
    assert {r.schedule["epochs"] for r in runs} == {5}
    assert {r.seed for r in runs if r.kind == "student"} == {3}


def test_vanilla_student_is_one_run_shared_by_every_pair(write_suite) -> None:
    document = tiny_suite(
        teachers={"resnet8": {}, "resnet14": {}},
        pairs=[{"teacher": "resnet8", "student": "resnet8", "self_distillation": True}, ["resnet14", "resnet8"]],
    )
    runs = plan(load_suite(write_suite(document)))
    vanilla = [r for r in runs if r.method == "Vanilla"]
    assert len(vanilla) == 2 and vanilla[0].run_id == vanilla[1].run_id
    assert {r.pair_teacher for r in vanilla} == {"resnet8", "resnet14"}
    kd = [r for r in runs if r.method == "KD"]
    assert kd[0].run_id != kd[1].run_id


def test_single_method_params_and_combinations(write_suite) -> None:
    document = tiny_suite(methods={"kd": {"temperature": 2}, "KD+AT": {"use": ["kd", "vanilla"], "ce_weight": 0.5}})
    runs = [r for r in plan(load_suite(write_suite(document))) if r.kind == "student"]
    kd_defaults = METHODS.get("kd").parameter_defaults()
    assert kd_defaults["temperature"] == 4.0 and kd_defaults["weight"] == 0.9
    assert runs[0].terms == (("kd", {**kd_defaults, "temperature": 2.0}),) and runs[0].ce_weight == 0.1
    assert [name for name, _ in runs[1].terms] == ["kd", "vanilla"] and runs[1].ce_weight == 0.5


def test_includes_merge_and_the_including_file_wins(tmp_path, write_suite) -> None:
    base = tiny_suite(seeds=[0, 1])
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    child = write_suite({"include": "base.yaml", "name": "child", "schedule": {"epochs": 7}})
    suite = load_suite(child)
    runs = plan(suite)
    assert suite.name == "child"
    assert {r.schedule["epochs"] for r in runs} == {7}
    assert {r.schedule["batch_size"] for r in runs} == {16}  # merged from the base
    assert {r.seed for r in runs if r.kind == "student"} == {0, 1}


def test_sweeps_make_one_run_per_point_and_tag_only_the_runs_they_touch(write_suite) -> None:
    document = tiny_suite(sweeps={"methods.KD.kd.temperature": [1, 2, 8]})
    runs = plan(load_suite(write_suite(document)))
    kd = [r for r in runs if r.method == "KD"]
    assert [r.sweep for r in kd] == [{"methods.KD.kd.temperature": t} for t in (1, 2, 8)]
    assert [dict(r.terms)["kd"]["temperature"] for r in kd] == [1.0, 2.0, 8.0]
    assert len([r for r in runs if r.method == "Vanilla"]) == 1  # untouched by the sweep: planned once


def test_excludes_drop_matching_runs(write_suite) -> None:
    document = tiny_suite(seeds=[0, 1], excludes=[{"method": "KD", "seed": 1}])
    runs = plan(load_suite(write_suite(document)))
    assert sorted((r.method, r.seed) for r in runs if r.kind == "student") == [
        ("KD", 0),
        ("Vanilla", 0),
        ("Vanilla", 1),
    ]


def test_schedule_presets_and_the_crd_switch(write_suite) -> None:
    document = tiny_suite(schedule="crd")
    runs = plan(load_suite(write_suite(document)))
    assert runs[0].schedule["epochs"] == 240 and runs[0].schedule["milestones"] == [150, 180, 210]
    runs = plan(
        load_suite(write_suite(tiny_suite(schedule="srkd-cifar")), ["schedule.preset=crd", "schedule.epochs=3"])
    )
    assert runs[0].schedule["epochs"] == 3 and runs[0].schedule["milestones"] == [150, 180, 210]


def test_teacher_checkpoints_key_switches_every_teacher_to_crd_files(write_suite) -> None:
    runs = plan(load_suite(write_suite(tiny_suite()), ["teacher_checkpoints=/ckpts"]))
    assert all(r.kind == "student" for r in runs)
    kd = next(r for r in runs if r.method == "KD")
    assert kd.teacher_checkpoint == "/ckpts/resnet8_vanilla/ckpt_epoch_240.pth" and kd.teacher_run is None


# --- every class of validation error: file, key path, bad value, valid choices ---


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"pairz": []}, "pairz: unknown key 'pairz'. Did you mean 'pairs'?"),
        ({"dataset": "cifar1000"}, "dataset.name: Unknown dataset 'cifar1000'. Did you mean 'cifar100'?"),
        ({"dataset": {**tiny_suite()["dataset"], "loader": "fast"}}, "dataset.loader: Unknown loader 'fast'"),
        (
            {"dataset": {**tiny_suite()["dataset"], "num_class": 3}},
            "dataset.num_class: unknown key 'num_class'. Did you mean 'num_classes'?",
        ),
        (
            {"dataset": {**tiny_suite()["dataset"], "num_classes": "four"}},
            "dataset.num_classes: expected int, got 'four' (str)",
        ),
        ({"schedule": {"epochs": 0}}, "schedule.epochs: expected a positive integer, got 0 (int)"),
        ({"schedule": {"lr": "fast"}}, "schedule.lr: expected a finite number, got 'fast' (str)"),
        ({"schedule": {"milestones": [5, 2]}}, "schedule.milestones: must be strictly increasing, got [5, 2]"),
        ({"schedule": {"epoch": 3}}, "schedule.epoch: unknown key 'epoch'. Did you mean 'epochs'?"),
        ({"schedule": "crdd"}, "schedule.preset: Unknown schedule preset 'crdd'. Did you mean 'crd'?"),
        ({"seeds": [0, "one"]}, "seeds: expected a non-empty list of integers"),
        ({"seeds": [1, 1]}, "seeds: seeds repeat: [1, 1]"),
        (
            {"teachers": {"resnet8": {}, "resnet21": {}}},
            "teachers.resnet21: Unknown model 'resnet21'. Did you mean 'resnet20'?",
        ),
        (
            {"teachers": {"resnet8": {"ckpt": "x"}}},
            "teachers.resnet8.ckpt: unknown key 'ckpt'. Did you mean 'checkpoint'?",
        ),
        ({"pairs": [["resnet8"]]}, "pairs[0]: expected [teacher, student], got ['resnet8'] (list)"),
        ({"pairs": [["resnet14", "resnet8"]]}, "pairs[0][0]: teacher 'resnet14' is not under 'teachers:'"),
        ({"pairs": [["resnet8", "resnet9"]]}, "pairs[0][1]: Unknown model 'resnet9'. Did you mean 'resnet8'?"),
        ({"methods": {"kdd": {}}}, "methods.kdd: Unknown method 'kdd'. Did you mean 'kd'?"),
        (
            {"methods": {"X": {"use": ["kd", "vanila"]}}},
            "methods.X.use: Unknown method 'vanila'. Did you mean 'vanilla'?",
        ),
        (
            {"methods": {"kd": {"temperatur": 2}}},
            "methods.kd.temperatur: unknown key 'temperatur'. Did you mean 'temperature'?",
        ),
        ({"methods": {"kd": {"temperature": "hot"}}}, "methods.kd.temperature: expected float, got 'hot' (str)"),
        (
            {"methods": {"X": {"use": ["kd"], "kd": {"weight": []}}}},
            "methods.X.kd.weight: expected float, got [] (list)",
        ),
        ({"methods": {"kd": {"ce_weight": "x"}}}, "methods.kd.ce_weight: expected a finite number, got 'x' (str)"),
        (
            {"sweeps": {"methods.KD.kd.temperature": 3}},
            "sweeps.methods.KD.kd.temperature: expected a non-empty list of values",
        ),
        ({"sweeps": {"nonsense.key": [1]}}, "sweeps.nonsense.key: cannot sweep 'nonsense.key'"),
        ({"excludes": {"method": "KD"}}, "excludes: expected a list"),
        ({"excludes": [{"methd": "KD"}]}, "excludes[0].methd: unknown key 'methd'. Did you mean 'method'?"),
        ({"training": {"precision": "fp8"}}, "training.precision: Unknown precision 'fp8'"),
    ],
)
def test_each_validation_error_names_key_value_and_choices(write_suite, change, expected) -> None:
    message = problems_of(write_suite, tiny_suite(**change))
    assert expected in message
    assert "suite.yaml: 1 problem:" in message


def test_every_problem_is_reported_at_once(write_suite) -> None:
    document = tiny_suite(seeds="all", schedule={"epochs": -1}, methods={"kdd": {}})
    message = problems_of(write_suite, document)
    assert "3 problems" in message
    for key in ("seeds:", "schedule.epochs:", "methods.kdd:"):
        assert key in message


def test_broken_files_and_overrides_are_reported(tmp_path, write_suite) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(broken)
    with pytest.raises(SuiteError, match="no such file"):
        load_suite(write_suite({**tiny_suite(), "include": "missing.yaml"}))
    with pytest.raises(SuiteError, match="must look like key.path=value"):
        load_suite(write_suite(tiny_suite()), ["schedule.epochs"])
    with pytest.raises(SuiteError, match="a suite must be a mapping"):
        load_suite(write_suite([1, 2]))  # type: ignore[arg-type]


def test_a_teacher_no_pair_uses_is_refused_and_a_teachers_own_preset_counts(write_suite) -> None:
    message = problems_of(write_suite, tiny_suite(teachers={"resnet8": {}, "resnet110": {}}))
    assert "teachers.resnet110: declared but no pair uses it" in message
    runs = plan(load_suite(write_suite(tiny_suite(teachers={"resnet8": {"schedule": "crd"}}))))
    teachers = [r for r in runs if r.kind == "teacher"]
    assert [t.student for t in teachers] == ["resnet8"]
    assert teachers[0].schedule["milestones"] == [150, 180, 210]
    refined = plan(load_suite(write_suite(tiny_suite(teachers={"resnet8": {"schedule": {"epochs": 9}}}))))
    assert refined[0].schedule["epochs"] == 9 and refined[0].schedule["batch_size"] == 16


def test_a_single_method_under_a_label_takes_its_parameters_beside_use(write_suite) -> None:
    document = tiny_suite(
        methods={"Hot": {"use": "kd", "temperature": 8}, "Warm": {"use": "kd", "kd": {"temperature": 2}}}
    )
    runs = [r for r in plan(load_suite(write_suite(document))) if r.kind == "student"]
    assert [dict(r.terms)["kd"]["temperature"] for r in runs] == [8.0, 2.0]
    message = problems_of(write_suite, tiny_suite(methods={"Hot": {"use": "kd", "temprature": 8}}))
    assert "methods.Hot.temprature: unknown key 'temprature'. Did you mean 'temperature'?" in message


def test_a_pair_may_refine_its_students_schedule(write_suite) -> None:
    """The CRD code trains MobileNetV2 and ShuffleNet students at lr 0.01: a pair's own schedule."""
    document = tiny_suite(
        teachers={"resnet8": {}, "resnet14": {}},
        pairs=[
            {"teacher": "resnet8", "student": "resnet8", "self_distillation": True},
            {"teacher": "resnet14", "student": "resnet8", "schedule": {"lr": 0.01}},
        ],
    )
    runs = plan(load_suite(write_suite(document)))
    lr = {(r.pair_teacher, r.method): r.schedule["lr"] for r in runs if r.kind == "student"}
    assert lr == {
        ("resnet8", "Vanilla"): 0.05,
        ("resnet8", "KD"): 0.05,
        ("resnet14", "Vanilla"): 0.01,
        ("resnet14", "KD"): 0.01,
    }
    assert {r.schedule["lr"] for r in runs if r.kind == "teacher"} == {0.05}
    assert "pairs[0].schedule.lr" in problems_of(
        write_suite,
        tiny_suite(
            pairs=[{"teacher": "resnet8", "student": "resnet8", "self_distillation": True, "schedule": {"lr": -1}}]
        ),
    )


def test_a_pair_may_refine_its_methods_parameters(write_suite) -> None:
    """mdistiller sets DKD's beta per pair: a pair's own method settings, merged over the suite's."""
    document = tiny_suite(
        teachers={"resnet8": {}, "resnet14": {}},
        pairs=[
            {"teacher": "resnet8", "student": "resnet8", "self_distillation": True},
            {"teacher": "resnet14", "student": "resnet8", "methods": {"KD": {"kd": {"temperature": 2}}}},
        ],
    )
    runs = [r for r in plan(load_suite(write_suite(document))) if r.method == "KD"]
    assert {r.pair_teacher: dict(r.terms)["kd"]["temperature"] for r in runs} == {"resnet8": 4.0, "resnet14": 2.0}
    message = problems_of(
        write_suite,
        tiny_suite(pairs=[{**SELF_PAIR, "methods": {"KDD": {}, "KD": {"kd": {"temperature": -1}}}}]),
    )
    assert "pairs[0].methods.KDD: Unknown method label 'KDD'. Did you mean 'KD'?" in message


def test_a_model_option_at_its_default_is_no_option(write_suite) -> None:
    """`models: {course_cnn: {first_pool_stride: 1}}` is the plain course_cnn: same runs, same ids."""
    document = tiny_suite(
        dataset={"name": "synthetic", "num_classes": 4, "image_size": 12},
        teachers={"course_cnn": {}},
        pairs=[["course_cnn", "course_mlp"]],
    )
    plain = [r.run_id for r in plan(load_suite(write_suite(document)))]
    stated = [
        r.run_id
        for r in plan(load_suite(write_suite({**document, "models": {"course_cnn": {"first_pool_stride": 1}}})))
    ]
    other = plan(load_suite(write_suite({**document, "models": {"course_cnn": {"first_pool_stride": 2}}})))
    assert stated == plain
    assert [r.run_id for r in other] != plain and other[0].models == {"course_cnn": {"first_pool_stride": 2}}
