"""The stages of ``kdbench bench --gpu-check``; each runs in a process of its own:

    python -m kdbench.bench.gpu_stages STAGE CONFIG.json RESULT.json

``CONFIG.json`` holds the check's plan, the report so far (later stages read earlier results: the
projection takes the best setting the step benchmarks found) and the stage's deadline (Unix time).
A stage saves what it has measured to ``RESULT.json`` after every measurement, so a stage killed at
its limit still leaves its earlier numbers; an exception is saved as the stage's ``error``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: a stage does not start a measurement it expects to end later than this close to its deadline
MARGIN_S = 3.0
#: pytest -v lines: "tests/gpu/test_x.py::test_y[param] PASSED"
PYTEST_LINE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")


class Recorder:
    """A stage's result, saved whole (atomically) after every change."""

    def __init__(self, path: Path):
        self.path = path
        self.result: dict[str, Any] = {}

    def save(self, error: str | None = None) -> None:
        document: dict[str, Any] = {"result": self.result}
        if error:
            document["error"] = error
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=1, default=str))
        os.replace(temporary, self.path)


class Clock:
    """The stage's deadline, and whether a measurement expected to take ``seconds`` still fits."""

    def __init__(self, deadline: float):
        self.deadline = deadline

    def left(self) -> float:
        return self.deadline - time.time()

    def fits(self, seconds: float) -> bool:
        return seconds + MARGIN_S < self.left()


# ---------------------------------------------------------------------------------------------
# the stages


def environment(plan: dict, report: dict, recorder: Recorder, clock: Clock) -> None:
    """Versions and devices: torch, CUDA, cuDNN, each GPU, the driver; whether submitit is there (unused)."""
    import torch

    import kdbench
    from kdbench.train import git_commit

    cuda = torch.cuda.is_available()
    recorder.result.update(
        {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "cuda_available": cuda,
            "gpus": [gpu_description(index) for index in range(torch.cuda.device_count())] if cuda else [],
            "driver": nvidia_driver(),
            "kdbench": kdbench.__version__,
            "git_commit": git_commit(),
            "submitit_installed": importlib.util.find_spec("submitit") is not None,
            "submitit_imported": "submitit" in sys.modules,  # the check must not need it
            "device": plan["device"],
        }
    )
    recorder.save()
    if plan["device"].startswith("cuda") and not cuda:
        raise RuntimeError("--device cuda but torch sees no CUDA device")


def gpu_description(index: int) -> dict:
    import torch

    properties = torch.cuda.get_device_properties(index)
    return {
        "name": properties.name,
        "capability": f"{properties.major}.{properties.minor}",
        "memory_gib": round(properties.total_memory / 2**30, 1),
        "multiprocessors": properties.multi_processor_count,
    }


def nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def tests(plan: dict, report: dict, recorder: Recorder, clock: Clock) -> None:
    """``pytest -m gpu tests/gpu``: each test's outcome as it finishes, then the failures' messages."""
    root = Path(plan["root"])
    if not (root / "tests" / "gpu").is_dir():
        raise RuntimeError(f"{root / 'tests' / 'gpu'} not found: run the check from a copy of the source tree")
    if importlib.util.find_spec("pytest") is None:
        raise RuntimeError("pytest is not installed here: the CUDA tests cannot run")
    junit = recorder.path.with_suffix(".junit.xml")
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "-v", "-o", "addopts="]
    command += ["-p", "no:cacheprovider", f"--junitxml={junit}"]
    recorder.result.update({"command": " ".join(command[2:]), "tests": {}})
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:  # type: ignore[union-attr]
        sys.stdout.write(line)
        match = PYTEST_LINE.match(line.strip())
        if match:
            recorder.result["tests"][match[1]] = {"outcome": match[2].lower()}
            recorder.result["counts"] = outcome_counts(recorder.result["tests"])
            recorder.save()
    recorder.result["exit_code"] = process.wait()
    recorder.result["seconds"] = time.monotonic() - started
    if junit.exists():
        add_junit_details(recorder.result["tests"], junit)
    recorder.result["counts"] = outcome_counts(recorder.result["tests"])
    recorder.save()
    if recorder.result["exit_code"] not in (0, 5):  # 5: no test collected (none marked gpu)
        failed = [name for name, test in recorder.result["tests"].items() if test["outcome"] in ("failed", "error")]
        raise RuntimeError(f"pytest exited with {recorder.result['exit_code']}: {', '.join(failed) or 'see the log'}")


def outcome_counts(results: dict[str, dict]) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for test in results.values():
        counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
    return counts


def add_junit_details(results: dict[str, dict], junit: Path) -> None:
    """Seconds of every test and the first line of each failure, skip or error message, from pytest's JUnit XML."""
    for case in ElementTree.parse(junit).iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        name = f"{module}.py::{case.get('name')}"
        entry = results.setdefault(name, {"outcome": "passed"})
        entry["seconds"] = float(case.get("time", 0.0))
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                entry["outcome"] = {"failure": "failed"}.get(child.tag, child.tag)
                entry["message"] = (child.get("message") or child.text or "").strip().splitlines()[0][:500]


def bench_fp32(plan: dict, report: dict, recorder: Recorder, clock: Clock) -> None:
    """kdbench's step against the CRD-style loop, every method of every pair, fp32 (the paper's numerics)."""
    from kdbench.bench.pair import bench_pair

    settings = bench_settings(plan, precision="fp32")
    recorder.result.update({"precision": "fp32", "compile": "off", "pairs": {}, "measured": {}})
    last = 0.0
    for teacher, student in plan["pairs"]:
        key = pair_key(teacher, student)
        if last and not clock.fits(last):
            recorder.result["pairs"][key] = {"skipped": "time budget"}
            continue
        started = time.monotonic()
        bench = bench_pair(teacher, student, plan["methods"], settings, progress=print)
        last = time.monotonic() - started
        recorder.result["pairs"][key] = {**bench.result, "seconds": last}
        recorder.result["measured"].update(bench.measured)
        recorder.save()


def bench_bf16(plan: dict, report: dict, recorder: Recorder, clock: Clock) -> None:
    """kdbench's step alone in bf16, every method of every pair (the methods taking turns in each window)."""
    kdbench_steps(plan, recorder, clock, compile_mode="off", order=tuple(plan["methods"]), together=True)


def bench_compile(plan: dict, report: dict, recorder: Recorder, clock: Clock) -> None:
    """bf16 + torch.compile, methods one at a time in ``compile_order`` while the stage's time lasts."""
    kdbench_steps(plan, recorder, clock, compile_mode=plan["compile_mode"], order=tuple(plan["compile_order"]))


def kdbench_steps(
    plan: dict, recorder: Recorder, clock: Clock, *, compile_mode: str, order: tuple[str, ...], together: bool = False
) -> None:
    """kdbench's step times per pair and method in bf16 (fp32 where bf16 cannot run: a CPU rehearsal).

    ``together``: a pair's methods are built first and take turns in every window (robust ratios);
    else one method at a time (a compiled step is built, compiled, timed and freed before the next),
    each started only if it fits the time left, judged by the slowest one so far.
    """
    import torch

    from kdbench.bench.kdbench_path import KdbenchPath
    from kdbench.bench.pair import pair_workload
    from kdbench.bench.timing import pool_size, time_paths
    from kdbench.bench.workload import random_split, use_device
    from kdbench.train import resolve_device

    device = resolve_device(plan["device"])
    precision = "bf16" if device.type == "cuda" else "fp32"
    settings = bench_settings(plan, precision=precision, compile_mode=compile_mode)
    use_device(device)
    recorder.result.update(
        {"precision": "bf16", "precision_run": precision, "compile": compile_mode, "pairs": {}, "measured": {}}
    )
    if precision != "bf16":
        recorder.result["note"] = f"bf16 needs CUDA: measured in fp32 on {device.type} (a rehearsal)"
    slowest = 0.0
    for teacher, student in plan["pairs"]:
        key = pair_key(teacher, student)
        rows: dict[str, dict] = {}
        recorder.result["pairs"][key] = {"teacher": teacher, "student": student, "methods": rows}
        groups = [order] if together else [(name,) for name in order]
        for group in groups:
            if slowest and not clock.fits(slowest):
                rows.update({name: {"skipped": "time budget"} for name in group})
                recorder.save()
                continue
            started = time.monotonic()
            works = {name: pair_workload(teacher, student, name, settings) for name in group}
            first = next(iter(works.values()))
            split = random_split(pool_size(settings), first.num_classes, first.image_shape, settings.seed)
            paths = {name: KdbenchPath(work, split, settings.seed, device) for name, work in works.items()}
            times = time_paths(paths, settings, progress=print)
            for name, path in paths.items():
                step_s = statistics.median(times[name])
                rows[name] = {
                    "kdbench_step_s": step_s,
                    "kdbench_images_per_s": settings.batch_size / step_s,
                    "kdbench_windows_s": times[name],
                    "nonfinite_steps": path.nonfinite_steps,
                }
                recorder.result["measured"][works[name].key()] = step_s
            del paths
            if device.type == "cuda":
                torch.cuda.empty_cache()
            seconds = time.monotonic() - started
            slowest = max(slowest, seconds / (1 if together else len(group)))
            for name in group:
                rows[name]["seconds"] = seconds / len(group)
            if "vanilla" in rows and "kdbench_step_s" in rows["vanilla"]:
                for row in rows.values():
                    if "kdbench_step_s" in row:
                        row["overhead_vs_vanilla"] = row["kdbench_step_s"] / rows["vanilla"]["kdbench_step_s"]
            recorder.save()


def packing(plan: dict, report: dict, recorder: Recorder, clock: Clock) -> None:
    """Throughput with 1, 2, 4, 8 runs at once (KD, bf16), per pair while time lasts; the recommended N."""
    from kdbench.bench.packing import PackingBenchFailed, packed_images_per_s, packing_summary
    from kdbench.bench.pair import pair_workload
    from kdbench.train import resolve_device

    device = resolve_device(plan["device"])
    settings = bench_settings(plan, precision="bf16" if device.type == "cuda" else "fp32")
    recorder.result.update({"method": plan["packing_method"], "precision_run": settings.precision, "pairs": {}})
    last: tuple[int, float] | None = None
    for teacher, student in plan["pairs"]:
        key = pair_key(teacher, student)
        work = pair_workload(teacher, student, plan["packing_method"], settings)
        throughputs: dict[int, list[float]] = {}
        problems: dict[int, str] = {}
        for count in plan["packing_counts"]:
            # N processes start at once: about as long as one, plus their N-fold timed steps
            expected = last[1] * max(1.0, count / last[0]) if last else 0.0
            if expected and not clock.fits(expected):
                problems[count] = "skipped: time budget"
                continue
            started = time.monotonic()
            try:
                throughputs[count] = [packed_images_per_s(work, settings, count)]
            except PackingBenchFailed as error:  # out of memory at this N, say: larger N will not fit either
                problems[count] = str(error)
                break
            finally:
                last = (count, time.monotonic() - started)
            print(f"packing {key}: {count} run(s) at once: {throughputs[count][0]:.0f} img/s", flush=True)
            entry = packing_summary(work, settings, throughputs, repeats=1)
            recorder.result["pairs"][key] = {**entry, "problems": problems}
            recorder.save()
        if not throughputs:
            recorder.result["pairs"][key] = {"problems": problems}
        else:
            recorder.result["pairs"][key]["problems"] = problems
        recorder.save()


def projection(plan: dict, report: dict, recorder: Recorder, clock: Clock) -> None:
    """The suite's device-hours at the best eager precision measured, packed at the recommended N, and an
    estimate with compile at the gain the compile stage measured (the projection does not compile: a
    compile per (pair, method) would take longer than the whole check)."""
    from kdbench.bench.projection import packed_projection, project_suite
    from kdbench.train import resolve_device

    device = resolve_device(plan["device"])
    steps = {name: step_times(report, name) for name in ("bench_fp32", "bench_bf16", "bench_compile")}
    precision = "fp32"
    if device.type == "cuda" and steps["bench_bf16"] and median_ratio(steps["bench_fp32"], steps["bench_bf16"]) > 1:
        precision = "bf16"
    eager = steps["bench_bf16"] if precision == "bf16" else steps["bench_fp32"]
    compile_gain = median_ratio(eager, steps["bench_compile"]) if precision == "bf16" else 0.0
    settings = bench_settings(plan, precision=precision)
    overrides = [f"training.precision={precision}"]
    measured = stage_result(report, "bench_bf16" if precision == "bf16" else "bench_fp32").get("measured", {})
    recorder.result.update({"suite": plan["suite"], "precision": precision, "overrides": overrides})
    recorder.save()
    result = project_suite(plan["suite"], overrides, settings, measured, progress=print)
    packings = stage_result(report, "packing").get("pairs", {})
    first_packing = next((entry for entry in packings.values() if entry.get("rows")), None)
    if first_packing is not None:
        result.update(packed_projection(result, first_packing))
    if compile_gain > 1:
        result["compile_gain"] = compile_gain
        result["compiled_hours_estimate"] = result["total_hours"] / compile_gain
        if "packed_hours" in result:
            # packing and compile both cut launch overhead: their gains need not multiply; a lower bound
            result["compiled_packed_hours_estimate"] = result["packed_hours"] / compile_gain
    recorder.result.update(result)
    recorder.save()


STAGES: dict[str, Callable[[dict, dict, Recorder, Clock], None]] = {
    "environment": environment,
    "tests": tests,
    "bench_fp32": bench_fp32,
    "bench_bf16": bench_bf16,
    "bench_compile": bench_compile,
    "packing": packing,
    "projection": projection,
}


# ---------------------------------------------------------------------------------------------
# shared


def bench_settings(plan: dict, *, precision: str, compile_mode: str = "off") -> Any:
    from kdbench.bench.settings import BenchSettings

    return BenchSettings(
        dataset=plan["dataset"],
        batch_size=plan["batch_size"],
        steps=plan["steps"],
        warmup=plan["warmup"],
        windows=plan["windows"],
        precision=precision,
        channels_last=True,
        compile=compile_mode,
        device=plan["device"],
        num_workers=0 if plan["tiny"] else None,  # a rehearsal: no DataLoader workers to start on a small CPU
        suite_steps=plan["suite_steps"],
    )


def pair_key(teacher: str, student: str) -> str:
    return f"{teacher} -> {student}"


def stage_result(report: dict, name: str) -> dict:
    return report.get("stages", {}).get(name, {}).get("result", {}) or {}


def step_times(report: dict, stage: str) -> dict[tuple[str, str], float]:
    """kdbench's step seconds per (pair, method) measured by a step stage."""
    times = {}
    for key, pair in stage_result(report, stage).get("pairs", {}).items():
        for method, row in (pair.get("methods") or {}).items():
            if isinstance(row, dict) and "kdbench_step_s" in row:
                times[key, method] = row["kdbench_step_s"]
    return times


def median_ratio(slower: dict, faster: dict) -> float:
    """The median over shared (pair, method) of ``slower / faster``; 0 when they share none."""
    shared = [slower[key] / faster[key] for key in slower.keys() & faster.keys()]
    return statistics.median(shared) if shared else 0.0


def main(argv: list[str]) -> int:
    name, config_path, result_path = argv
    config = json.loads(Path(config_path).read_text())
    recorder = Recorder(Path(result_path))
    try:
        STAGES[name](config["plan"], config["report"], recorder, Clock(config["deadline"]))
    except Exception as error:
        traceback.print_exc()
        recorder.save(error=f"{type(error).__name__}: {error}")
        return 1
    recorder.save()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
