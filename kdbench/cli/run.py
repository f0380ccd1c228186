"""``kdbench run``: train a suite's pending runs, teachers first; finished runs are skipped."""

from __future__ import annotations

import argparse

from kdbench.cli.common import UserError, add_command, add_suite_arguments, plan_from_args, store_from_args, unique_runs
from kdbench.executors import EXECUTORS


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
        default="local",
        help="where runs train: " + "; ".join(f"{name}: {entry.help}" for name, entry in EXECUTORS.items()),
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
        "--wait",
        action="store_true",
        help="wait for the runs to end, then print the report (the local executor always does)",
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
    from kdbench.executors import ExecutorError, RunOptions, get_executor

    suite, runs = plan_from_args(args)
    store = store_from_args(args, runs.runs)
    executor = get_executor(args.executor)  # an unknown name: a user error naming the nearest ones
    options = RunOptions(
        device=args.device,
        data_root=args.data_root,
        retry_failed=args.retry_failed,
        progress=not args.quiet,
        workers=args.workers,
        profile=args.profile,
        profile_settings=tuple(args.profile_set),
    )
    from kdbench.preflight import check_before_training
    from kdbench.results.store import DONE

    # what the runs to train point at, and the device a local run would take: before any run directory exists
    to_train = [spec for spec in runs.runs if not spec.not_applicable and store.status(spec.run_id) != DONE]
    check_before_training(to_train, suite.source, device=args.device, local=executor.name == "local")
    unlinked = {spec.teacher_run for spec in to_train} & set(store.unlinked)
    if unlinked:  # a training process opens its own store: it would not find the teacher run
        raise UserError(
            f"the teacher run(s) {', '.join(sorted(unlinked))} are stored under the id older kdbench gave them, "
            f"and {store.root / 'runs'} refused the link runs/<id> -> <older id> that lets their students find "
            "them; run on a file system that takes symbolic links, or link them there by hand"
        )
    store.record_teacher_files(runs.runs)
    store.refresh_teacher_file_specs(runs.runs)
    try:
        executor.check(options)
        check_data(to_train, args.data_root)
        todo = unique_runs(runs)
        print(f"suite {suite.name}: {len(todo)} runs, results in {store.root}, executor {executor.name}")
        submission = executor.submit(todo, store, options)
        print(submission.describe())
        finished = submission.finished
        if args.wait and not finished:
            executor.wait(store, todo)
            finished = True
    except ExecutorError as error:
        raise UserError(str(error)) from None
    if finished and not args.no_report:
        from kdbench.cli import report

        report.print_summary_table(args, runs, store)
    return submission.exit_code


def check_data(to_train, data_root: str | None) -> None:
    """A missing or incomplete data set stops here, before any training or submission (DataError, exit 2)."""
    from kdbench.train import load_data

    if to_train:
        load_data(to_train[0], data_root)
