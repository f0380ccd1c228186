"""``kdbench bench --gpu-check --out DIR``: every CUDA path of kdbench measured and checked in one command.

Made for short windows on a GPU machine: one command, no network, nothing to install (it runs from a
bare copy of the source tree with ``PYTHONPATH=.``; submitit is never imported). Its stages run one
after another, each in a process of its own under its own time limit:

1. ``environment``: torch, CUDA, cuDNN, GPU, driver;
2. ``tests``: ``pytest -m gpu tests/gpu``, the outcome of each test;
3. ``bench_fp32``: kdbench's step against the CRD-style loop, both pairs, every method, fp32;
4. ``bench_bf16``: kdbench's step in bf16;
5. ``bench_compile``: bf16 + ``compile reduce-overhead``, methods in order of interest while the
   stage's time lasts (a compile costs about a minute; the rest are recorded as skipped);
6. ``packing``: throughput with 1, 2, 4, 8 runs at once (KD, bf16), the recommended N per pair;
7. ``projection``: the Table 1 suite's device-hours at the best setting found.

A stage's limit is its share of the time budget (``--budget-s``) plus what earlier stages left
unused. A stage that fails or runs out of time is recorded as such (with what it had measured by
then: stages write their results as they go) and the next one starts. After every stage the JSON
(``gpu-check.json``) and the Markdown summary (``gpu-check.md``) in DIR are rewritten, so even a
killed check leaves its files; ``gpu-check.log`` holds every stage's output. ``--device cpu --tiny``
rehearses all of it at toy sizes on a CPU in about a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import kdbench

#: (stage, share of the time budget, its floor in seconds), in the order they run
STAGES = (
    ("environment", 0.03, 20.0),
    ("tests", 0.30, 30.0),
    ("bench_fp32", 0.12, 10.0),
    ("bench_bf16", 0.07, 10.0),
    ("bench_compile", 0.20, 10.0),
    ("packing", 0.15, 10.0),
    ("projection", 0.13, 10.0),
)
#: the default budget: the issue's "under 8 minutes of wall time on an H100/H200 class GPU"
DEFAULT_BUDGET_S = 480.0
#: a CPU rehearsal's budget (``--tiny``)
TINY_BUDGET_S = 300.0
#: the rehearsal's suite to project: a few runs of small networks on the embedded digits
TINY_SUITE = {
    "name": "gpu-check-rehearsal",
    "dataset": "digits",
    "schedule": {"epochs": 2, "batch_size": 16, "lr": 0.05, "milestones": [1], "lr_decay": 0.1},
    "seeds": [0, 1],
    "teachers": {"resnet14": {}},
    "pairs": [["resnet14", "resnet8"]],
    "methods": {"Vanilla": {"use": "vanilla"}, "KD": {"use": "kd"}},
}
#: seconds a stage's process gets after its limit to write its last results before it is killed
GRACE_S = 5.0
FILES = {"json": "gpu-check.json", "markdown": "gpu-check.md", "log": "gpu-check.log"}


@dataclass(frozen=True)
class CheckPlan:
    """The sizes of every stage: the issue's at full size, toy sizes with ``tiny`` (a CPU rehearsal)."""

    device: str
    tiny: bool
    budget_s: float
    dataset: str
    batch_size: int
    pairs: tuple[tuple[str, str], ...]
    methods: tuple[str, ...]
    #: methods compiled first (where compiling matters most: the cheapest steps, KD the overhead claim)
    compile_order: tuple[str, ...]
    compile_mode: str
    packing_method: str
    packing_counts: tuple[int, ...]
    #: the suite to project; None: ``TINY_SUITE``, written beside the stages' files
    suite: str | None
    steps: int
    warmup: int
    windows: int
    suite_steps: int
    #: the source tree holding ``tests/gpu`` (the check runs from a copy of it)
    root: str = field(default_factory=lambda: str(Path(kdbench.__file__).resolve().parent.parent))

    @classmethod
    def full(cls, device: str, budget_s: float = DEFAULT_BUDGET_S) -> CheckPlan:
        return cls(
            device=device,
            tiny=False,
            budget_s=budget_s,
            dataset="cifar100",
            batch_size=64,
            pairs=(("resnet56", "resnet20"), ("wrn_40_2", "wrn_16_2")),
            methods=("vanilla", "kd", "at", "cc", "srkd"),
            compile_order=("kd", "vanilla", "srkd", "at", "cc"),
            compile_mode="reduce-overhead",
            packing_method="kd",
            packing_counts=(1, 2, 4, 8),
            suite="suites/cifar100.yaml",
            steps=20,
            warmup=5,
            windows=5,
            suite_steps=5,
        )

    @classmethod
    def rehearsal(cls, device: str, budget_s: float = TINY_BUDGET_S) -> CheckPlan:
        """Every stage at toy sizes: ResNet8s on 8x8 digits, two steps a window, KD compiled, 1 and 2 runs
        at once, a four-run suite projected."""
        return cls(
            device=device,
            tiny=True,
            budget_s=budget_s,
            dataset="digits",
            batch_size=16,
            pairs=(("resnet8", "resnet8"),),
            methods=("vanilla", "kd"),
            compile_order=("kd",),
            compile_mode="reduce-overhead",
            packing_method="kd",
            packing_counts=(1, 2),
            suite=None,
            steps=2,
            warmup=1,
            windows=2,
            suite_steps=1,
        )


def stage_limits(budget_s: float) -> dict[str, float]:
    """Each stage's own share of the budget (before what earlier stages leave unused is added)."""
    return {name: max(floor, share * budget_s) for name, share, floor in STAGES}


def run_gpu_check(plan: CheckPlan, out: Path, echo: Callable[[str], None] = print) -> dict:
    """Run every stage under its limit, write the JSON and Markdown to ``out``; returns the JSON's content."""
    from kdbench.bench.report import format_gpu_check

    out.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "kdbench_gpu_check": 1,
        "kdbench_version": kdbench.__version__,
        "started_at": datetime.now(timezone.utc).isoformat(),
        "plan": asdict(plan),
        "stages": {},
    }
    limits = stage_limits(plan.budget_s)
    unused = 0.0
    with tempfile.TemporaryDirectory(prefix="kdbench-gpu-check-") as work, open(out / FILES["log"], "w") as log:
        if plan.suite is None:
            suite = Path(work) / "rehearsal-suite.yaml"
            suite.write_text(json.dumps(TINY_SUITE))  # JSON is YAML
            plan = replace(plan, suite=str(suite))
        for name, _, _ in STAGES:
            limit = limits[name] + unused
            echo(f"  stage {name} (limit {limit:.0f} s) ...")
            outcome = run_stage(name, plan, report, limit, Path(work), log)
            unused = max(0.0, limit - outcome["seconds"])
            report["stages"][name] = outcome
            echo(f"  stage {name}: {outcome['status']} in {outcome['seconds']:.1f} s")
            write_files(report, out, format_gpu_check)
    report["finished_at"] = datetime.now(timezone.utc).isoformat()
    markdown = write_files(report, out, format_gpu_check)
    echo(markdown)
    return report


def write_files(report: dict, out: Path, render: Callable[[dict], str]) -> str:
    """The JSON and the Markdown summary (written whole each time: a killed check keeps the last pair)."""
    (out / FILES["json"]).write_text(json.dumps(report, indent=2, default=str) + "\n")
    markdown = render(report)
    (out / FILES["markdown"]).write_text(markdown + "\n")
    return markdown


def run_stage(
    name: str, plan: CheckPlan, report: dict, limit: float, work: Path, log: IO[str], grace_s: float = GRACE_S
) -> dict:
    """One stage in its own process (a CUDA crash or hang stays there); killed with its children at the limit."""
    config, result = work / f"{name}.config.json", work / f"{name}.result.json"
    deadline = time.time() + limit
    config.write_text(json.dumps({"plan": asdict(plan), "report": report, "deadline": deadline}, default=str))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (plan.root, env.get("PYTHONPATH")) if p)
    log.write(f"\n===== stage {name} (limit {limit:.0f} s) =====\n")
    log.flush()
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "kdbench.bench.gpu_stages", name, str(config), str(result)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=plan.root,
        env=env,
        start_new_session=True,  # its own process group: killed whole at the limit, packing's runs too
    )
    try:
        code = process.wait(timeout=limit + grace_s)
        status = "ok" if code == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        code, status = None, "timeout"
    seconds = time.monotonic() - started
    recorded = json.loads(result.read_text()) if result.exists() else {}
    outcome = {"status": status, "seconds": seconds, "limit_s": limit, "exit_code": code}
    if recorded.get("error"):
        outcome["status"] = "failed" if status == "ok" else status
        outcome["error"] = recorded.pop("error")
    elif status == "failed":
        outcome["error"] = f"the stage's process exited with code {code} (see {FILES['log']})"
    elif status == "timeout":
        outcome["error"] = f"ran out of its {limit:.0f} s; what it measured by then is kept"
    outcome["result"] = recorded.get("result", {})
    return outcome
