"""``kdbench bench`` at a tiny size on CPU: output structure, projection arithmetic, user errors.

No test asserts a speed: only that the numbers are there, positive, finite and consistent.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from kdbench.cli import main
from kdbench.suite import load_suite, plan
from tests.conftest import TINY_DATA, TINY_SCHEDULE, tiny_suite

TINY = ["--teacher", "resnet8", "--student", "resnet8", "--dataset", "digits", "--batch-size", "16"]
FAST = ["--steps", "2", "--windows", "2", "--warmup", "0", "--num-workers", "0", "--suite-steps", "1"]
PER_METHOD = [
    "kdbench_step_s",
    "reference_step_s",
    "kdbench_images_per_s",
    "reference_images_per_s",
    "speedup",
    "overhead_vs_vanilla",
]


def positive_finite(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_cli_writes_every_key_and_a_positive_suite_projection(write_suite, tmp_path, capsys) -> None:
    suite = write_suite(tiny_suite())
    out = tmp_path / "out" / "bench.json"
    code = main(["bench", *TINY, *FAST, "--methods", "kd,vanilla", "--json", str(out), "--suite", str(suite)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "speedup" in printed and "overhead vs vanilla" in printed and "device-hours" in printed

    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["torch"] == torch.__version__
    assert (result["batch_size"], result["teacher"], result["student"]) == (16, "resnet8", "resnet8")
    assert list(result["methods"]) == ["vanilla", "kd"]  # vanilla first: the overhead baseline
    for name, row in result["methods"].items():
        assert all(positive_finite(row[key]) for key in PER_METHOD), (name, row)
        assert row["speedup"] == pytest.approx(row["reference_step_s"] / row["kdbench_step_s"])
        assert row["kdbench_images_per_s"] == pytest.approx(16 / row["kdbench_step_s"])
        assert row["reference_images_per_s"] == pytest.approx(16 / row["reference_step_s"])
        assert len(row["kdbench_windows_s"]) == len(row["reference_windows_s"]) == 2
        assert row["nonfinite_steps"] == 0
        vanilla = result["methods"]["vanilla"]["kdbench_step_s"]
        assert row["overhead_vs_vanilla"] == pytest.approx(row["kdbench_step_s"] / vanilla)
    assert result["methods"]["vanilla"]["overhead_vs_vanilla"] == 1.0

    projection = result["suite_projection"]
    # the tiny suite: a resnet8 teacher run, a Vanilla and a KD student; 48 train and 24 test images, batch 16
    distinct = {spec.run_id for spec in plan(load_suite(suite))}
    assert projection["runs"] == len(distinct) == 3
    assert positive_finite(projection["total_hours"])
    assert projection["total_hours"] == pytest.approx(sum(g["hours"] for g in projection["groups"]))
    train_steps_per_run = TINY_SCHEDULE["epochs"] * math.ceil(TINY_DATA["train_size"] / 16)
    test_batches = math.ceil(TINY_DATA["test_size"] / 16)
    groups = {tuple(g["terms"]): g for g in projection["groups"]}
    assert set(groups) == {("vanilla",), ("kd",)}
    assert groups[("vanilla",)]["runs"] == 2  # the teacher's run and the Vanilla student have one step cost
    assert groups[("kd",)]["runs"] == 1
    for terms, group in groups.items():
        assert group["train_steps"] == group["runs"] * train_steps_per_run
        teacher_passes = 1 if terms == ("kd",) else 0  # the teacher is evaluated once before distilling
        assert group["eval_steps"] == (group["runs"] * TINY_SCHEDULE["epochs"] + teacher_passes) * test_batches
        # every model here is a resnet8 at batch 16, so one evaluation step time serves all
        expected = (group["train_steps"] * group["step_s"] + group["eval_steps"] * group["eval_step_s"]) / 3600
        assert group["hours"] == pytest.approx(expected)
        assert positive_finite(group["step_s"]) and positive_finite(group["eval_step_s"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "vanila,kd"], "Unknown method 'vanila'. Did you mean 'vanilla'?"),
        (["--methods", "kd", "--student", "resnet21"], "Unknown model 'resnet21'. Did you mean"),
        (["--methods", "kd", "--precision", "bf16", "--device", "cpu"], "--precision: bf16 needs a CUDA device"),
        (["--methods", "kd", "--batch-size", "0"], "--batch-size: must be a positive integer, got 0"),
        (["--methods", "kd", "seeds=[0]"], "apply to a --suite file"),
        (["--suite", "no/such/suite.yaml"], "--suite: file not found: no/such/suite.yaml"),
    ],
)
def test_user_errors_exit_2_with_a_message(args: list[str], message: str, capsys) -> None:
    base = ["bench", "--teacher", "resnet8", "--student", "resnet8", "--dataset", "digits", "--device", "cpu"]
    assert main([*base, *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_packing_measures_every_count_and_projects_the_suite(write_suite, tmp_path, capsys) -> None:
    suite = write_suite(tiny_suite())
    out = tmp_path / "packing.json"
    packing_args = ["--packing", "2,1", "--packing-repeats", "1", "--packing-method", "kd"]
    code = main(
        ["bench", *TINY, *FAST, "--methods", "vanilla", *packing_args, "--suite", str(suite), "--json", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "runs at once" in printed and "recommended" in printed

    packing = json.loads(out.read_text())["packing"]
    assert [row["processes"] for row in packing["rows"]] == [1, 2]
    assert packing["workload"]["terms"][0][0] == "kd" and packing["workload"]["batch_size"] == 16
    for row in packing["rows"]:
        assert positive_finite(row["images_per_s"]) and len(row["measurements"]) == 1
        assert row["images_per_s_per_run"] == pytest.approx(row["images_per_s"] / row["processes"])
    one, two = packing["rows"]
    assert one["speedup_vs_fewest"] == 1.0
    assert two["speedup_vs_fewest"] == pytest.approx(two["images_per_s"] / one["images_per_s"])
    best = max(one["images_per_s"], two["images_per_s"])
    chosen = next(row for row in packing["rows"] if row["processes"] == packing["recommended_processes"])
    assert chosen["images_per_s"] >= 0.9 * best
    assert all(row["images_per_s"] < 0.9 * best for row in packing["rows"] if row["processes"] < chosen["processes"])

    projection = json.loads(out.read_text())["suite_projection"]
    gain = chosen["images_per_s"] / one["images_per_s"]
    assert projection["packed_processes"] == chosen["processes"]
    assert projection["packed_hours"] == pytest.approx(projection["total_hours"] / gain)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--packing", "0,2"], "--packing: must be a comma-separated list of positive integers"),
        (["--packing", "two"], "--packing: must be a comma-separated list of positive integers"),
        (["--packing", "1", "--packing-repeats", "0"], "--packing-repeats: must be a positive integer"),
        (["--packing", "1", "--packing-method", "kdd"], "Unknown method 'kdd'. Did you mean 'kd'?"),
        (["--compile", "reduce"], "Unknown --compile mode 'reduce'. Did you mean 'reduce-overhead'?"),
    ],
)
def test_packing_and_compile_mistakes_exit_2(args: list[str], message: str, capsys) -> None:
    base = ["bench", "--teacher", "resnet8", "--student", "resnet8", "--dataset", "digits", "--device", "cpu"]
    assert main([*base, "--methods", "vanilla", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err
