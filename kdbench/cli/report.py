"""``kdbench report``: the suite's table, methods x pairs, mean +- std (n) of top-1 over seeds."""

from __future__ import annotations

import argparse

from kdbench.cli.common import add_command, add_suite_arguments, plan_from_args, store_from_args
from kdbench.results.store import results_frame


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "report",
        help="tables of a suite's results (mean +- std over seeds)",
        description="Aggregate the suite's finished runs over seeds into a methods x pairs table.",
        example="kdbench report suites/smoke.yaml",
    )
    add_suite_arguments(parser)
    parser.set_defaults(handler=run)


def summary_table(frame) -> str:
    from tabulate import tabulate

    students = frame[frame["kind"] == "student"]
    if students.empty:
        return "(no student runs)"
    students = students.assign(pair=students["teacher"] + " -> " + students["student"])
    grouped = students.groupby(["method", "pair"], sort=False)["top1_last"].agg(["mean", "std", "count"])
    methods = list(dict.fromkeys(students["method"]))
    pairs = list(dict.fromkeys(students["pair"]))
    rows = []
    for method in methods:
        row = [method]
        for pair in pairs:
            if (method, pair) not in grouped.index or grouped.loc[(method, pair), "count"] == 0:
                row.append("—")
                continue
            mean, std, n = grouped.loc[(method, pair)]
            row.append(f"{mean:.2f} ± {std:.2f} ({int(n)})" if n > 1 else f"{mean:.2f} ({int(n)})")
        rows.append(row)
    return tabulate(rows, headers=["method", *pairs], tablefmt="github")


def print_summary_table(args: argparse.Namespace, runs, store) -> None:
    print(summary_table(results_frame(runs, store)))


def run(args: argparse.Namespace) -> int:
    suite, runs = plan_from_args(args)
    store = store_from_args(args)
    table = summary_table(results_frame(runs, store))
    print(table)
    out = store.suite_dir(suite.name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(table + "\n")
    return 0
