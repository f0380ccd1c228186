"""``kdbench status``: what is done, running, failed or pending in a suite, and why runs stopped."""

from __future__ import annotations

import argparse

from kdbench.cli.common import UserError, add_command, add_suite_arguments, plan_from_args, store_from_args, unique_runs
from kdbench.lifecycle import RunStatus, count_statuses, describe_run

#: statuses that need no explanation line under the counts
UNREMARKABLE = (RunStatus.DONE, RunStatus.PENDING, RunStatus.RUNNING, RunStatus.NOT_APPLICABLE)


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "status",
        help="count done / running / failed / pending runs; show why runs failed",
        description="The state of every run of the suite ("
        + ", ".join(status.value for status in RunStatus)
        + "), each from the executor that took it (the local one, or SLURM's queue and accounting), "
        "with the reason of each failure, block or interruption.",
        example="kdbench status suites/smoke.yaml",
    )
    add_suite_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per run")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kdbench.executors import ExecutorError, run_states

    suite, runs = plan_from_args(args)
    store = store_from_args(args, runs.runs)
    distinct = unique_runs(runs)
    try:
        states = run_states(store, distinct)
    except ExecutorError as error:
        raise UserError(str(error)) from None
    print(f"suite {suite.name}: {len(distinct)} runs")
    print("  " + count_statuses(states[spec.run_id].status for spec in distinct))
    if args.verbose:
        from tabulate import tabulate

        rows = [
            [spec.run_id, describe_run(spec), states[spec.run_id].status, states[spec.run_id].job_id or ""]
            for spec in distinct
        ]
        print(tabulate(rows, headers=["run", "what", "status", "job"]))
    for spec in distinct:
        state = states[spec.run_id]
        if state.status in UNREMARKABLE:
            continue
        # the status word leads; after it only what it adds (the job, why): not "interrupted: interrupted"
        job = f" (job {state.job_id})" if state.job_id else ""
        print(
            f"  {state.status:<8} {spec.run_id}  {describe_run(spec)}{job}"
            + (f": {state.detail}" if state.detail else "")
        )
        if state.log_path:
            print(f"           log: {state.log_path}")
        elif state.status == RunStatus.FAILED:
            print(f"           see {store.run_dir(spec.run_id)}")
        if state.log_tail:
            print("\n".join("           | " + line for line in state.log_tail.splitlines()))
    from kdbench.suite.planning import chains_of  # where each chain of distillations (TAKD) stands

    for chain in chains_of(distinct):
        links = " -> ".join(f"{spec.student} {states[spec.run_id].status}" for spec in chain)
        print(f"  chain {chain[-1].method} seed {chain[-1].seed}: {links}")
    # as documented in EXIT_CODES: 1 when runs failed or are blocked, so scripts can tell
    return 1 if any(state.status in (RunStatus.FAILED, RunStatus.BLOCKED) for state in states.values()) else 0
