"""``kdbench bench --gpu-check``: the CPU rehearsal writes every section with numbers; stages fail alone."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdbench.bench.gpu_check import STAGES, CheckPlan, run_stage, stage_limits
from kdbench.bench.report import format_gpu_check
from kdbench.cli import main

ROOT = Path(__file__).resolve().parents[2]


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_the_cpu_rehearsal_runs_every_stage_without_submitit_and_records_numbers(tmp_path: Path) -> None:
    """As on the GPU machine: ``python -m kdbench`` from the source tree, no submitit to import."""
    blocker = tmp_path / "blocker" / "submitit"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('submitit is not installed on the GPU machine')\n")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker.parent), str(ROOT)]), KDBENCH_CPU_THREADS="1")
    command = [sys.executable, "-m", "kdbench", "bench", "--gpu-check", "--device", "cpu", "--tiny", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "# kdbench GPU check" in done.stdout and "## Claims" in done.stdout  # the Markdown, printed
    assert sorted(p.name for p in out.iterdir()) == ["gpu-check.json", "gpu-check.log", "gpu-check.md"]

    report = json.loads((out / "gpu-check.json").read_text())
    stages = report["stages"]
    assert list(stages) == [name for name, _, _ in STAGES]
    assert all(stage["status"] == "ok" and number(stage["seconds"]) for stage in stages.values()), stages
    environment = stages["environment"]["result"]
    assert environment["torch"] and number(environment["cpu_count"]) and environment["submitit_imported"] is False
    tests = stages["tests"]["result"]
    assert tests["counts"]["skipped"] == len(tests["tests"]) > 0  # the CUDA tests, collected and skipped here
    assert all(number(test["seconds"]) for test in tests["tests"].values())
    fp32 = stages["bench_fp32"]["result"]["pairs"]["resnet8 -> resnet8"]["methods"]
    assert set(fp32) == {"vanilla", "kd"}
    assert all(number(row["kdbench_step_s"]) and number(row["reference_step_s"]) for row in fp32.values())
    for name in ("bench_bf16", "bench_compile"):
        rows = stages[name]["result"]["pairs"]["resnet8 -> resnet8"]["methods"]
        assert all(number(row["kdbench_step_s"]) for row in rows.values()) and rows, name
    assert stages["bench_compile"]["result"]["compile"] == "reduce-overhead"
    packing = stages["packing"]["result"]["pairs"]["resnet8 -> resnet8"]
    assert [row["processes"] for row in packing["rows"]] == [1, 2]
    assert all(number(row["images_per_s"]) for row in packing["rows"])
    assert packing["recommended_processes"] in (1, 2)
    projection = stages["projection"]["result"]
    # the rehearsal suite: a teacher run, Vanilla and KD students, two seeds each
    assert projection["runs"] == 5 and number(projection["total_hours"]) and number(projection["packed_hours"])
    assert (out / "gpu-check.md").read_text().strip() == format_gpu_check(report).strip()


def test_a_failing_and_a_timed_out_stage_are_recorded_and_the_next_runs(tmp_path: Path) -> None:
    plan = CheckPlan.rehearsal("cpu")
    with open(tmp_path / "log", "w") as log:
        missing = run_stage("no_such_stage", plan, {}, 30.0, tmp_path, log)
        timed_out = run_stage("environment", plan, {}, 0.01, tmp_path, log, grace_s=0.0)
        ok = run_stage("environment", plan, {}, 60.0, tmp_path, log)
    assert missing["status"] == "failed" and "no_such_stage" in missing["error"]
    assert timed_out["status"] == "timeout" and "ran out of its" in timed_out["error"]
    assert ok["status"] == "ok" and ok["result"]["device"] == "cpu"


def test_stage_limits_share_the_budget_above_each_floor() -> None:
    limits = stage_limits(480.0)
    assert list(limits) == [name for name, _, _ in STAGES]
    assert sum(share for _, share, _ in STAGES) == pytest.approx(1.0)
    assert sum(limits.values()) == pytest.approx(480.0 + (20.0 - 0.03 * 480.0))  # only the environment's floor binds
    assert stage_limits(10.0)["tests"] == 30.0


def test_gpu_check_mistakes_exit_2(capsys) -> None:
    assert main(["bench", "--gpu-check"]) == 2
    assert "--gpu-check: needs --out DIR" in capsys.readouterr().err
    assert main(["bench", "--gpu-check", "--out", "x", "--budget-s", "0", "--device", "tpu"]) == 2
    error = capsys.readouterr().err
    assert "--budget-s: must be a positive number" in error and "cpu or cuda[:N], got 'tpu'" in error


def test_the_summary_reads_the_claims_from_the_best_setting_measured() -> None:
    pair = "resnet56 -> resnet20"

    def stage(methods: dict) -> dict:
        return {"status": "ok", "seconds": 1.0, "limit_s": 2.0, "result": {"pairs": {pair: {"methods": methods}}}}

    fp32 = {
        "vanilla": {"kdbench_step_s": 0.016, "reference_step_s": 0.05},
        "kd": {"kdbench_step_s": 0.02, "reference_step_s": 0.1},
    }
    bf16 = {"vanilla": {"kdbench_step_s": 0.008}, "kd": {"kdbench_step_s": 0.0125}}
    compiled = {"kd": {"kdbench_step_s": 0.01}, "vanilla": {"skipped": "time budget"}}
    hours = {"total_hours": 9.0, "train_hours": 8.0, "eval_hours": 1.0, "packed_hours": 4.5, "packing": "2 at once"}
    result = {"runs": 300, "precision": "bf16", "device": "H200", **hours}
    projection = {"status": "ok", "seconds": 1.0, "limit_s": 2.0, "result": result}
    report = {
        "plan": {"pairs": [["resnet56", "resnet20"]], "batch_size": 64, "dataset": "cifar100"},
        "stages": {"bench_fp32": stage(fp32), "bench_bf16": stage(bf16), "bench_compile": stage(compiled)}
        | {"projection": projection},
    }
    markdown = format_gpu_check(report)
    # best KD step 0.01 s (compiled): 0.1 / 0.01 = 10x the CRD-style loop; best Vanilla 0.008 s: 1.25x
    assert "| >= 10x | 10.0x | yes |" in markdown
    assert "| <= 1.3x | 1.25x | yes |" in markdown
    assert "| <= 4 h | 4.50 h | NO |" in markdown
    assert f"| {pair} | kd | 20.00 | 12.50 | 10.00 | 100.00 | 10.0x |" in markdown
    assert f"| {pair} | vanilla | 16.00 | 8.00 | skipped (time budget) | 50.00 | 6.2x |" in markdown
    assert "300 runs at bf16 (eager), one after another: 9.00 device-hours" in markdown
    assert "packed, 2 at once: 4.50 device-hours" in markdown
