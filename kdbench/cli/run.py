"""``kdbench run``: train a suite's pending runs, teachers first; finished runs are skipped."""

from __future__ import annotations

import argparse
import time

from kdbench.cli.common import UserError, add_command, add_suite_arguments, plan_from_args, store_from_args, unique_runs


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "run",
        help="train a suite's pending runs (teachers first), then print its table",
        description="Train every run of the suite that is not done yet, in dependency order, then print the "
        "report. Finished runs are skipped, interrupted ones resume from their last epoch, and a run that "
        "another process is training is left to it.",
        example="kdbench run suites/smoke.yaml            # or: kdbench run suites/cifar100.yaml seeds=[0]",
    )
    add_suite_arguments(parser)
    parser.add_argument(
        "--executor",
        choices=["local", "slurm"],
        default="local",
        help="local: train here (--workers runs at a time); slurm: submit job arrays through submitit",
    )
    parser.add_argument(
        "--profile",
        default=None,
        help="SLURM cluster profile: a name under slurm/ (e.g. local) or a YAML path (with --executor slurm)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
    parser.add_argument(
        "--profile-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile key, e.g. --profile-set time_min=60 (repeatable)",
    )
    parser.add_argument(
        "--wait", action="store_true", help="with --executor slurm: wait for the jobs, then print the report"
    )
    parser.add_argument(
        "--workers",
        default="auto",
        metavar="N",
        help="train N runs at once in worker processes sharing the device (default auto: one per CPU core "
        "on a CPU, where each run uses one thread; one on a GPU)",
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="train failed runs again (their old failure is kept)"
    )
    parser.add_argument("--no-report", action="store_true", help="do not print the report at the end")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    suite, runs = plan_from_args(args)
    store = store_from_args(args)
    check_data(runs, store, args.data_root)
    if args.executor == "slurm":
        return _run_slurm(args, suite, runs, store)
    if args.profile:
        raise UserError("--profile is for --executor slurm")
    from kdbench.executors.local import run_local

    todo = unique_runs(runs)
    workers, why = _workers(args.workers, args.device)
    print(f"suite {suite.name}: {len(todo)} runs, results in {store.root}, {workers} at a time ({why})")
    started = time.perf_counter()
    summary = run_local(
        todo,
        store,
        device=args.device,
        data_root=args.data_root,
        retry_failed=args.retry_failed,
        progress=not args.quiet,
        workers=workers,
    )
    elapsed = time.perf_counter() - started
    print(
        f"{len(summary.trained)} trained, {len(summary.skipped_done)} already done, {len(summary.failed)} failed, "
        f"{len(summary.blocked)} blocked, {len(summary.busy)} busy elsewhere in {elapsed:.1f} s"
    )
    if not args.no_report:
        from kdbench.cli import report

        report.print_summary_table(args, runs, store)
    return 1 if summary.failed or summary.blocked else 0


def _workers(value: str, device: str | None) -> tuple[int, str]:
    from kdbench.executors.local import auto_workers

    if value == "auto":
        return auto_workers(device)
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"--workers must be a positive integer or auto, got {value!r}")
    return int(value), "--workers"


def check_data(runs, store, data_root: str | None) -> None:
    """A missing or incomplete data set stops here, before any training or submission (DataError, exit 2)."""
    from kdbench.results.store import DONE
    from kdbench.train import load_data

    pending = [r for r in runs if not r.not_applicable and store.status(r.run_id) != DONE]
    if pending:
        load_data(pending[0], data_root)


def _run_slurm(args: argparse.Namespace, suite, runs, store) -> int:
    from kdbench.executors import slurm

    try:
        profile = slurm.load_profile(args.profile or "local", args.profile_set)
        summary = slurm.submit_suite(
            unique_runs(runs),
            store,
            profile,
            retry_failed=args.retry_failed,
            device=args.device,
            data_root=args.data_root,
        )
    except (ValueError, slurm.SlurmError) as error:
        raise UserError(str(error)) from None
    print(summary.describe())
    if args.wait:
        slurm.wait_for_suite(store, unique_runs(runs), poll_s=10)
        if not args.no_report:
            from kdbench.cli import report

            report.print_summary_table(args, runs, store)
    return 1 if summary.failed or summary.blocked else 0
