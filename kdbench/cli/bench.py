"""``kdbench bench``: training steps per second of kdbench's path against a CRD-style loop; a suite's cost."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kdbench.bench.settings import DEFAULT_METHODS
from kdbench.cli.common import UserError, add_command
from kdbench.suite import COMPILE_MODES, PRECISIONS
from kdbench.validation import Problem, ValidationError

if TYPE_CHECKING:
    from kdbench.bench.settings import BenchSettings


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "bench",
        help="train steps/s of kdbench's path vs the CRD code's loop per method; a suite's projected hours",
        description="Time training steps of a teacher -> student pair for each method on random images of a data "
        "set's shape, in this process on one device: (a) kdbench's path (the training loop's own step, "
        "device-resident data with batched augmentation) and (b) a reference loop written the way the CRD code "
        "trains (DataLoader workers with per-image PIL transforms, fp32, a sync every step). Prints steps/s, "
        "images/s, the speed-up (reference step time / kdbench step time) and each method's overhead over "
        "vanilla; vanilla is always timed as that baseline. With --suite, also projects the device-hours of "
        "every run of the suite, one after another on this device.",
        example="kdbench bench --teacher resnet56 --student resnet20 --methods vanilla,kd,at --json out.json\n"
        "  kdbench bench --suite suites/cifar100.yaml seeds=[0]      # projected hours only\n"
        "  kdbench bench --methods kd --packing 1,2,4,8 --suite suites/cifar100.yaml   # runs per GPU, packed hours\n"
        '  PYTHONPATH=. python3 -m kdbench bench --gpu-check --out "$OUT"   # every CUDA path, one command\n'
        "  kdbench bench --gpu-check --device cpu --tiny --out /tmp/check     # its CPU rehearsal",
    )
    parser.add_argument("--teacher", default="resnet56", help="teacher model")
    parser.add_argument("--student", default="resnet20", help="student model")
    parser.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated methods (default: {','.join(DEFAULT_METHODS)}; with --suite: none unless given)",
    )
    parser.add_argument("--dataset", default="cifar100", help="data set whose shape the random images take")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per method and path, over --windows")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before the first window (later: 2)")
    parser.add_argument("--windows", type=int, default=5, help="timed windows; a step time is their median")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="kdbench path; bf16 only on CUDA")
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="kdbench path in the NHWC layout, as training.channels_last (default: on, as training)",
    )
    parser.add_argument(
        "--compile",
        default="off",
        metavar="MODE",
        help=f"kdbench path: torch.compile the step, as training.compile ({', '.join(COMPILE_MODES)}; "
        "reduce-overhead and max-autotune add CUDA graphs on CUDA; compiling takes a minute before timing starts)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
    parser.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="the reference's DataLoader workers (default: the CRD code's 8, capped by the CPUs)",
    )
    parser.add_argument(
        "--packing",
        default=None,
        metavar="N,N,...",
        help="also measure the device's throughput with N runs at once (N processes, as --workers N and a SLURM "
        "profile's runs_per_job), e.g. 1,2,4,8, and recommend N; with --suite, the packed hours too",
    )
    parser.add_argument("--packing-method", default="kd", metavar="M", help="the method timed for --packing")
    parser.add_argument("--packing-repeats", type=int, default=3, metavar="R", help="measurements per N (median kept)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON here")
    parser.add_argument("--suite", default=None, metavar="YAML", help="also project the hours of this suite's runs")
    parser.add_argument("--suite-steps", type=int, default=5, help="timed steps per (pair, method) of the suite")
    check = parser.add_argument_group(
        "GPU check",
        "--gpu-check measures and checks every CUDA path in one command (sized for under 8 minutes on an H100/H200): "
        "the "
        "environment, pytest -m gpu, the step benchmarks in fp32, bf16 and bf16 + compile, packing 1,2,4,8, the "
        "Table 1 projection; JSON and Markdown to --out, the Markdown printed at the end. Other options are ignored.",
    )
    check.add_argument("--gpu-check", action="store_true", help="run the GPU check (needs --out)")
    check.add_argument("--out", default=None, metavar="DIR", help="where the check writes gpu-check.json/.md/.log")
    check.add_argument(
        "--tiny", action="store_true", help="every stage at toy sizes: a CPU rehearsal of the check (--device cpu)"
    )
    check.add_argument(
        "--budget-s",
        type=float,
        default=None,
        metavar="S",
        help="the check's time budget in seconds, shared by its stages (default 480; 300 with --tiny); a ceiling: "
        "stages end when done",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="overrides of the --suite file, e.g. seeds=[0] training.precision=bf16 (values are YAML)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.gpu_check:
        return _gpu_check(args)
    import torch

    from kdbench.bench.pair import bench_pair, canonical_model, check_methods
    from kdbench.bench.projection import packed_projection, project_suite
    from kdbench.bench.report import format_packing, format_pair_table, format_projection
    from kdbench.bench.settings import BenchSettings, settings_problems
    from kdbench.data import DATASETS
    from kdbench.train import resolve_device

    settings = BenchSettings(
        dataset=DATASETS.canonical(args.dataset),
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        windows=args.windows,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        device=args.device,
        num_workers=args.num_workers,
        suite_steps=args.suite_steps,
    )
    try:
        device = resolve_device(args.device)
    except RuntimeError as error:
        raise UserError(f"--device {args.device!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: CUDA is not available here; use cpu")
    problems = settings_problems(settings, device)
    if args.overrides and not args.suite:
        problems.append(f"key=value overrides ({' '.join(args.overrides)}) apply to a --suite file; none given")
    if args.suite and not Path(args.suite).exists():
        problems.append(f"--suite: file not found: {args.suite}")
    counts = _packing_counts(args.packing, problems) if args.packing else []
    if args.packing_repeats < 1:
        problems.append(f"--packing-repeats must be a positive integer, got {args.packing_repeats}")
    if problems:
        # the one validation mechanism: every problem at once, each under the option it is about
        raise ValidationError("kdbench bench", [_as_problem(text) for text in problems])
    methods = args.methods.split(",") if args.methods else ([] if args.suite else list(DEFAULT_METHODS))
    methods = [m.strip() for m in methods if m.strip()]
    result: dict = {}
    measured: dict[str, float] = {}
    if methods:
        teacher, student = canonical_model(args.teacher), canonical_model(args.student)
        try:
            check_methods(teacher, student, methods)  # unknown: UnknownNameError, exit 2 with did-you-mean
        except ValueError as error:
            raise UserError(str(error)) from None
        bench = bench_pair(teacher, student, methods, settings, progress=_progress)
        result, measured = bench.result, bench.measured
        print(
            f"{result['teacher']} -> {result['student']} on {result['device']} (torch {result['torch']}, "
            f"{result['cpu_threads']} threads), batch {result['batch_size']}, {result['dataset']} shape "
            f"{'x'.join(map(str, result['image_shape']))}, {result['precision']}"
            f"{', channels_last' if result['channels_last'] else ''}"
            f"{', compile ' + result['compile'] if result['compile'] != 'off' else ''}; reference: "
            f"{result['reference_num_workers']} DataLoader workers; median of {result['windows']} windows, "
            f"{result['steps']} timed steps per path"
        )
        print(format_pair_table(result))
        rows = result["methods"].items()
        diverged = [f"{name} ({row['nonfinite_steps']})" for name, row in rows if row["nonfinite_steps"]]
        if diverged:
            print(f"note: steps with a non-finite loss (random data; timed all the same): {', '.join(diverged)}")
    packing = None
    if counts:
        packing = _bench_packing(args, settings, counts)
        result["packing"] = packing
        print()
        print(format_packing(packing))
    if args.suite:
        try:
            projection = project_suite(args.suite, args.overrides, settings, measured, progress=_progress)
        except ValueError as error:
            raise UserError(str(error)) from None
        if not methods:
            result = {"device": projection["device"], "torch": torch.__version__}
        if packing is not None:
            projection.update(packed_projection(projection, packing))
        result["suite_projection"] = projection
        if methods or packing:
            print()
        print(format_projection(projection))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


def _as_problem(text: str) -> Problem:
    """'--batch-size must be ...' as Problem('--batch-size', 'must be ...'); other messages name their option."""
    option = re.match(r"(--[a-z-]+):? (.*)", text)
    if option:
        return Problem(option[1], option[2])
    named = re.search(r"--[a-z-]+", text)
    return Problem(named[0] if named else "", text)


def _packing_counts(text: str, problems: list[str]) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        counts = []
    if not counts or counts[0] < 1:
        problems.append(f"--packing must be a comma-separated list of positive integers such as 1,2,4, got {text!r}")
        return []
    return counts


def _bench_packing(args: argparse.Namespace, settings: BenchSettings, counts: list[int]) -> dict:
    from kdbench.bench.packing import PackingBenchFailed, bench_packing
    from kdbench.bench.pair import canonical_model, check_methods, pair_workload

    try:
        teacher, student = canonical_model(args.teacher), canonical_model(args.student)
        (method,) = check_methods(teacher, student, [args.packing_method])[-1:]
    except ValueError as error:
        raise UserError(f"--packing-method: {error}") from None
    work = pair_workload(teacher, student, method, settings)
    try:
        return bench_packing(work, settings, counts, repeats=args.packing_repeats, progress=_progress)
    except PackingBenchFailed as error:  # e.g. too many runs for the device's memory: say so, no traceback
        raise UserError(f"{error}\n  (try fewer: --packing {','.join(map(str, counts[:-1])) or '1'})") from None


def _gpu_check(args: argparse.Namespace) -> int:
    """``--gpu-check``: the stages of ``kdbench.bench.gpu_check`` under the budget; exit 1 if one failed."""
    from kdbench.bench.gpu_check import CheckPlan, run_gpu_check

    problems = []
    if not args.out:
        problems.append("--gpu-check needs --out DIR (where gpu-check.json, .md and .log go)")
    if args.budget_s is not None and not args.budget_s > 0:
        problems.append(f"--budget-s must be a positive number of seconds, got {args.budget_s}")
    device = args.device or "cuda"
    if not (device == "cpu" or device.startswith("cuda")):
        problems.append(f"--device for --gpu-check: cpu or cuda[:N], got {device!r}")
    if problems:
        # the one validation mechanism: every problem at once, each under the option it is about
        raise ValidationError("kdbench bench", [_as_problem(text) for text in problems])
    build = CheckPlan.rehearsal if args.tiny else CheckPlan.full
    plan = build(device) if args.budget_s is None else build(device, args.budget_s)
    report = run_gpu_check(plan, Path(args.out), echo=lambda line: print(line, flush=True))
    failed = [name for name, stage in report["stages"].items() if stage["status"] != "ok"]
    print(f"\nwrote {Path(args.out) / 'gpu-check.json'} and gpu-check.md; stages not ok: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)
