"""``kdbench status``: what is done, running, failed or pending in a suite, and why runs failed."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from kdbench.cli.common import add_command, add_suite_arguments, plan_from_args, store_from_args, unique_runs
from kdbench.executors.local import describe
from kdbench.results.store import DONE, FAILED, NOT_APPLICABLE


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "status",
        help="count done / running / failed / pending runs; show why runs failed",
        description="The state of every run of the suite (done, running, interrupted, failed, pending, blocked), "
        "with the reason of each failure.",
        example="kdbench status suites/smoke.yaml",
    )
    add_suite_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per run")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    suite, runs = plan_from_args(args)
    store = store_from_args(args)
    distinct = unique_runs(runs)
    # SLURM's view for runs that were submitted (it only asks SLURM about those), the store's for the rest
    from kdbench.executors.slurm import describe_state, slurm_states

    cluster = slurm_states(store, [s for s in distinct if not s.not_applicable])
    states, details = {}, {}
    for spec in distinct:
        if spec.not_applicable:
            states[spec.run_id] = NOT_APPLICABLE
            continue
        submitted = cluster.get(spec.run_id)
        if submitted is not None and submitted.state not in ("not-submitted",):
            states[spec.run_id] = submitted.state
            details[spec.run_id] = submitted
            continue
        state = store.status(spec.run_id)
        if state not in (DONE, FAILED) and spec.teacher_run and store.status(spec.teacher_run) == FAILED:
            state = "blocked"
        states[spec.run_id] = state
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    order = [
        "done",
        "running",
        "requeued",
        "pending",
        "interrupted",
        "blocked",
        "failed",
        "cancelled",
        "lost",
        "unknown",
        "na",
    ]
    print(f"suite {suite.name}: {len(distinct)} runs")
    print(
        "  " + ", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=lambda s: order.index(s) if s in order else 99))
    )
    if args.verbose:
        rows = [
            [s.run_id, describe(s), states[s.run_id], getattr(details.get(s.run_id), "job_id", "")] for s in distinct
        ]
        print(tabulate(rows, headers=["run", "what", "status", "slurm job"]))
    for spec in distinct:
        if spec.run_id in details and states[spec.run_id] not in (DONE, "pending", "running"):
            state = details[spec.run_id]
            print(f"  {state.state:<8} {spec.run_id}  {describe(spec)}: {describe_state(state)}")
            if state.log_path:
                print(f"           log: {state.log_path}")
            if state.log_tail:
                print("\n".join("           | " + line for line in state.log_tail.splitlines()))
        elif states[spec.run_id] == FAILED:
            failure = store.failure(spec.run_id) or {}
            print(f"  failed   {spec.run_id}  {describe(spec)}: {failure.get('reason', '?')}")
            print(f"           see {store.run_dir(spec.run_id)}")
        elif states[spec.run_id] == "blocked":
            print(f"  blocked  {spec.run_id}  {describe(spec)}: its teacher run {spec.teacher_run} failed")
    return 0
