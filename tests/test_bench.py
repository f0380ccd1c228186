"""``kdbench bench`` at a tiny size on CPU: output structure, shared maths, projection arithmetic, user errors.

No test asserts a speed: only that the numbers are there, positive, finite and consistent.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from kdbench.bench import (
    KdbenchPath,
    ReferencePath,
    Workload,
    calibrate_batchnorm,
    crop_padding,
    random_split,
    resolved_terms,
    topk_accuracy,
)
from kdbench.cli import main
from kdbench.models import create_model
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


@pytest.mark.parametrize("method", ["vanilla", "kd", "at"])
def test_both_paths_compute_the_same_loss_from_the_same_weights(method: str) -> None:
    """The reference differs in its data path and loop, not its maths: same images, same first loss."""
    work = Workload(
        teacher="resnet8",
        student="resnet8",
        terms=resolved_terms([method]),
        num_classes=10,
        image_shape=(3, 8, 8),
        batch_size=8,
        padding=1,
    )
    split = random_split(16, 10, (3, 8, 8), seed=0)
    fast = KdbenchPath(work, split, seed=3, device=torch.device("cpu"))
    reference = ReferencePath(work, split, seed=3, device=torch.device("cpu"), num_workers=0)
    reference.batches(0)  # train mode as at an epoch's start
    images, labels = torch.randn(8, 3, 8, 8), torch.arange(8)
    assert fast.step(images, labels) == pytest.approx(reference.step(images, labels, torch.arange(8)), rel=1e-5)


def test_reference_batches_look_like_the_crd_loader() -> None:
    work = Workload(
        teacher="resnet8",
        student="resnet8",
        terms=resolved_terms(["kd"]),
        num_classes=10,
        image_shape=(3, 8, 8),
        batch_size=4,
        padding=1,
    )
    reference = ReferencePath(work, random_split(6, 10, (3, 8, 8), seed=0), seed=0, device="cpu", num_workers=0)
    batches = list(reference.batches(0))
    assert [len(b[0]) for b in batches] == [4, 2]  # the last partial batch is kept
    images, labels, indices = batches[0]  # the CRD code's CIFAR100Instance also returns the index
    assert images.dtype == torch.float32 and images.shape == (4, 3, 8, 8)
    assert sorted(torch.cat([b[2] for b in batches]).tolist()) == list(range(6))
    assert labels.dtype == torch.int64


def test_topk_accuracy_against_a_direct_count() -> None:
    logits = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 7, (50,), generator=torch.Generator().manual_seed(1))
    top1, top5 = topk_accuracy(logits, target)
    ranks = (logits > logits.gather(1, target[:, None])).sum(1)  # how many classes score above the true one
    assert top1.item() == pytest.approx(100.0 * (ranks < 1).float().mean().item())
    assert top5.item() == pytest.approx(100.0 * (ranks < 5).float().mean().item())


def test_a_random_deep_teacher_is_calibrated_to_finite_moderate_outputs() -> None:
    """Untrained BN statistics in eval mode let a ResNet110's activations grow with depth; calibrated, they do not."""
    torch.manual_seed(0)
    teacher = create_model("resnet110", 10).eval()
    images = torch.randn(8, 3, 8, 8)
    with torch.no_grad():
        assert teacher(images).abs().max() > 1e3  # the premise: raw init statistics do not normalise
    calibrate_batchnorm(teacher, (3, 8, 8), torch.device("cpu"), seed=0)
    assert not teacher.training
    assert all(m.momentum == 0.1 for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        assert teacher(images).abs().max() < 100


def test_crop_padding_follows_the_data_set() -> None:
    assert crop_padding("cifar100", 32) == 4
    assert crop_padding("tinyimagenet", 64) == 8
    assert crop_padding("digits", 8) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "vanila,kd"], "Unknown method 'vanila'. Did you mean 'vanilla'?"),
        (["--methods", "kd", "--student", "resnet21"], "Unknown model 'resnet21'. Did you mean"),
        (["--methods", "kd", "--precision", "bf16", "--device", "cpu"], "--precision bf16 needs a CUDA device"),
        (["--methods", "kd", "--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
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
        (["--packing", "0,2"], "--packing must be a comma-separated list of positive integers"),
        (["--packing", "two"], "--packing must be a comma-separated list of positive integers"),
        (["--packing", "1", "--packing-repeats", "0"], "--packing-repeats must be a positive integer"),
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


class DiesWhenUnpickled:
    """Stands in for a workload; the spawned process that unpickles it exits at once, as if killed."""

    def __reduce__(self):
        import os

        return (os._exit, (3,))


def test_a_packing_process_that_dies_is_named_instead_of_waited_for() -> None:
    from kdbench.bench import BenchSettings
    from kdbench.bench_packing import PackingBenchFailed, time_packed

    settings = BenchSettings(device="cpu", steps=1, warmup=0)
    with pytest.raises(PackingBenchFailed) as error:
        time_packed(DiesWhenUnpickled(), settings, 2)  # type: ignore[arg-type]
    assert "process 1/2: died with exit code 3" in str(error.value)
    assert "process 2/2: died with exit code 3" in str(error.value)
