"""``kdbench cancel``: cancel a suite's queued and running jobs (all, or a filtered part), each run through the
executor that took it: SLURM scancels its jobs; the local executor has no queue and names the process
that trains each running run instead (Ctrl-C there stops it; it resumes later)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kdbench.cli.common import UserError, add_command, add_suite_arguments, plan_from_args, store_from_args
from kdbench.lifecycle import describe_run
from kdbench.registry import nearest_first

if TYPE_CHECKING:
    from kdbench.suite import RunSpec


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "cancel",
        help="cancel a suite's SLURM jobs (all, or by method, pair, seed)",
        description="Cancel the queued, requeued and running SLURM jobs of the suite's runs (runs trained by a "
        "local kdbench run are named with their process, not stopped: Ctrl-C there). Finished epochs "
        "stay checkpointed: `kdbench run ... --executor slurm` submits the runs again and they resume. "
        "Students waiting on a cancelled teacher are cancelled by SLURM with it. A job that trains several runs "
        "(runs_per_job > 1) is cancelled whole; the other runs it trains are named.",
        example="kdbench cancel suites/cifar100.yaml --method KD --pair wrn_40_2,wrn_16_2 --seed 1",
    )
    add_suite_arguments(parser)
    parser.add_argument(
        "--method",
        action="append",
        default=[],
        metavar="M",
        help="only runs of this method label (as in the suite; 'Teacher' for teacher runs); repeatable",
    )
    parser.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="T,S",
        help="only the students of this teacher,student pair; repeatable",
    )
    parser.add_argument("--seed", action="append", type=int, default=[], metavar="N", help="only this seed; repeatable")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kdbench.executors import ExecutorError, cancel_runs

    _, runs = plan_from_args(args)
    chosen = select_runs(runs, methods=args.method, pairs=args.pair, seeds=args.seed)
    store = store_from_args(args, runs.runs)
    try:
        cancelled = cancel_runs(store, chosen)
    except ExecutorError as error:
        raise UserError(str(error)) from None
    if not cancelled:
        selected = len({spec.run_id for spec in chosen})
        print(f"nothing to cancel: none of the {selected} selected runs has a queued or running job")
        return 0
    by_id = {spec.run_id: spec for spec in chosen}
    for run_id, job_id in cancelled.items():
        print(f"  cancelled  job {job_id}  {run_id}  {describe_run(by_id[run_id])}")
    jobs = len(set(cancelled.values()))
    print(f"cancelled {jobs} job(s) ({len(cancelled)} runs); submit the suite again to resume them")
    return 0


def select_runs(runs: list[RunSpec], *, methods: list[str], pairs: list[str], seeds: list[int]) -> list[RunSpec]:
    """The runs matching every given filter (a filter left empty matches all); unknown values are errors."""
    from kdbench.models import MODELS

    labels = sorted({spec.method for spec in runs})
    wanted_methods = set()
    for method in methods:
        match = next((label for label in labels if label.lower() == method.lower()), None)
        if match is None:
            raise UserError(
                f"--method {method}: not a method of this suite. Choices, nearest first: "
                f"{', '.join(nearest_first(method, labels))}"
            )
        wanted_methods.add(match)
    wanted_pairs = set()
    suite_pairs = sorted({f"{spec.pair[0]},{spec.pair[1]}" for spec in runs if spec.kind == "student"})
    for pair in pairs:
        names = [name.strip() for name in pair.split(",")]
        if len(names) != 2 or not all(names):
            raise UserError(f"--pair {pair}: give teacher,student, e.g. --pair resnet56,resnet20")
        canonical = f"{MODELS.canonical(names[0])},{MODELS.canonical(names[1])}"
        if canonical not in suite_pairs:
            raise UserError(
                f"--pair {pair}: not a pair of this suite. Choices, nearest first: "
                f"{', '.join(nearest_first(canonical, suite_pairs))}"
            )
        wanted_pairs.add(canonical)
    suite_seeds = sorted({spec.seed for spec in runs})
    for seed in seeds:
        if seed not in suite_seeds:
            raise UserError(f"--seed {seed}: not a seed of this suite. Choices: {', '.join(map(str, suite_seeds))}")
    return [
        spec
        for spec in runs
        if (not wanted_methods or spec.method in wanted_methods)
        and (not wanted_pairs or (spec.kind == "student" and f"{spec.pair[0]},{spec.pair[1]}" in wanted_pairs))
        and (not seeds or spec.seed in seeds)
    ]
