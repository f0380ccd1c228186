"""``kdbench report``: a suite's results in the paper's layout, beside the paper's numbers, with plots."""

from __future__ import annotations

import argparse
import sys

from kdbench.cli.common import UserError, add_command, add_suite_arguments, plan_from_args, store_from_args
from kdbench.results.report import FORMATS, VALUES, Report, build_report, write_report
from kdbench.results.store import ResultStore, results_frame


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "report",
        help="the suite's table in the paper's layout, the paper's numbers and our deltas, plots, runs.csv",
        description="Aggregate the suite's runs over seeds into the paper's layout (methods x pairs, "
        "mean ± std (n) per cell, the best student in bold, NA where a method does not apply, unfinished runs "
        "shown as such), hold it against the paper's published table and write report.md, report.tex, "
        "report.csv, runs.csv (one row per run) and plots/ under --out. Prints the --format one.",
        example="kdbench report suites/cifar100.yaml --against crd --metric best",
    )
    add_suite_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default="markdown", help="what to print")
    parser.add_argument(
        "--metric", choices=VALUES, default="last", help="accuracy of the last epoch (as the CRD code reports) or best"
    )
    parser.add_argument(
        "--against",
        action="append",
        metavar="TABLE",
        help="paper table(s) to compare with, e.g. srkd/table1, or a paper (crd: all its tables); repeatable; "
        "'none' for no comparison (default: the suite's `reproduces`)",
    )
    parser.add_argument("--out", default=None, help="where to write the files (default: <results root>/<suite name>/)")
    parser.add_argument("--no-plots", action="store_true", help="skip the plots (seaborn is the slow part)")
    parser.set_defaults(handler=run)


def make_report(args: argparse.Namespace, suite, runs, store: ResultStore) -> tuple[Report, object]:
    """The report and the frame it came from; a bad --against or an empty suite is a user error."""
    frame = results_frame(runs, store)
    if "reproduces" not in frame.columns:
        frame.insert(min(2, len(frame.columns)), "reproduces", suite.reproduces)
    against = getattr(args, "against", None)
    if against and any(a.lower() == "none" for a in against):
        against = []
    try:
        report = build_report(
            frame,
            against=against,
            value=getattr(args, "metric", "last"),
            suite=suite.name,
            reproduces=suite.reproduces,
        )
    except ValueError as error:
        raise UserError(str(error)) from None
    return report, frame


def print_summary_table(args: argparse.Namespace, runs, store: ResultStore) -> None:
    """After ``kdbench run``: the suite's table in Markdown, no files written."""
    from kdbench.cli.common import load_suite_from_args

    report, _ = make_report(args, load_suite_from_args(args), runs, store)
    print(report.to_markdown())


def run(args: argparse.Namespace) -> int:
    suite, runs = plan_from_args(args)
    store = store_from_args(args)
    report, frame = make_report(args, suite, runs, store)
    out = store.suite_dir(suite.name) if args.out is None else args.out
    written = write_report(report, frame, out)
    sys.stdout.write(report.render(args.format))
    lines = [f"wrote {', '.join(p.name for p in written.values())} under {out}"]
    if not args.no_plots:
        from kdbench.results.plots import curve_runs, curves_frame, plot_all

        curves = curves_frame(store.run_dir(run_id) for run_id in curve_runs(frame))
        summary = plot_all(frame, report, out, curves)
        names = sorted({p.stem for p in summary.written})
        lines.append(f"plots: {', '.join(names) or 'none'} (PNG and PDF under {out}/plots)")
        lines += [f"  skipped {name}: {reason}" for name, reason in summary.skipped.items()]
    print("\n".join(lines), file=sys.stderr)
    return 0
