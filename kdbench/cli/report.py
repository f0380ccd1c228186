"""``kdbench report``: a suite's results in the paper's layout, beside the paper's numbers, with plots.

pandas, seaborn and the report modules are imported inside the handler, so ``kdbench --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys

from kdbench.cli.common import UserError, add_command, add_suite_arguments, plan_from_args, store_from_args

#: the renderings (kdbench.results.report.FORMATS; a test keeps the two equal)
FORMATS = ("markdown", "latex", "csv")


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "report",
        help="the suite's table in the paper's layout, ties and paired differences, the paper's numbers, plots",
        description="Aggregate the suite's runs over seeds into the paper's layout (methods x pairs, "
        "mean ± std (n) per cell, NA where a method does not apply, unfinished runs shown as such), bold every "
        "method tied with the column's highest mean (paired t-test over seeds), the paired differences to a "
        "reference row with 95%% intervals, the paper's published table with each cell's protocol and our "
        "deltas, the reproduction gap, and write report.md, report.tex, report.csv, runs.csv (one row per run) "
        "and plots/ under --out. Each file's header records how it was made; reports with other overrides, "
        "metrics or options get other file names (report-best.md, ...). Prints the --format one.",
        example="kdbench report suites/cifar100.yaml schedule.preset=crd --against crd",
    )
    add_suite_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default="markdown", help="what to print")
    parser.add_argument(
        "--metric",
        default="last",
        help="last (the last epoch, as the CRD code reports), best (best test epoch), selected (the epoch "
        "chosen on a validation split), or any metric the runs store, e.g. weighted_f1 or top1_selected",
    )
    parser.add_argument(
        "--against",
        action="append",
        metavar="TABLE",
        help="paper table(s) to compare with, e.g. srkd/table1, or a paper (crd: all its tables); repeatable; "
        "'none' for no comparison (default: the suite's `reproduces`)",
    )
    parser.add_argument(
        "--against-row",
        default=None,
        metavar="ROW",
        help="the row paired differences are taken to (default: Vanilla), e.g. KD",
    )
    parser.add_argument(
        "--alpha", type=float, default=0.05, help="significance level of the paired t-test that decides ties"
    )
    parser.add_argument(
        "--bootstrap", action="store_true", help="also a percentile bootstrap interval over seeds for each difference"
    )
    parser.add_argument("--out", default=None, help="where to write the files (default: <results root>/<suite name>/)")
    parser.add_argument(
        "--name",
        default=None,
        help="base name of the files (NAME.md, NAME.tex, NAME.csv, NAME-runs.csv, NAME-plots/); default: report "
        "plus a suffix naming the non-default options",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the plots (seaborn is the slow part)")
    parser.set_defaults(handler=run)


def _provenance(args: argparse.Namespace, store):
    import kdbench
    from kdbench.results.report import DEFAULT_REFERENCE_ROW, Provenance

    against = getattr(args, "against", None)
    return Provenance(
        kdbench_version=kdbench.__version__,
        results_root=str(store.root),
        overrides=tuple(getattr(args, "overrides", ()) or ()),
        metric=getattr(args, "metric", "last"),
        against=tuple(a for a in against if a.lower() != "none") if against else None,
        reference_row=getattr(args, "against_row", None) or DEFAULT_REFERENCE_ROW,
        alpha=getattr(args, "alpha", 0.05),
        bootstrap=getattr(args, "bootstrap", False),
    )


def make_report(args: argparse.Namespace, suite, runs, store):
    """The report and the frame it came from; a bad --against, --metric or an empty suite is a user error."""
    from kdbench.results.report import build_report
    from kdbench.results.store import results_frame

    frame = results_frame(runs, store)
    for repaired in frame.attrs.get("repairs", []):
        print(f"kdbench: {repaired}", file=sys.stderr)
    if "reproduces" not in frame.columns:
        frame.insert(min(2, len(frame.columns)), "reproduces", suite.reproduces)
    provenance = _provenance(args, store)
    try:
        report = build_report(
            frame,
            against=list(provenance.against) if provenance.against is not None else None,
            metric=provenance.metric,
            suite=suite.name,
            reproduces=suite.reproduces,
            reference_row=getattr(args, "against_row", None),
            alpha=provenance.alpha,
            bootstrap=provenance.bootstrap,
            provenance=provenance,
        )
    except ValueError as error:
        raise UserError(str(error)) from None
    return report, frame


def print_summary_table(args: argparse.Namespace, runs, store) -> None:
    """After ``kdbench run``: the suite's table in Markdown, no files written."""
    from kdbench.cli.common import load_suite_from_args

    report, _ = make_report(args, load_suite_from_args(args, quiet=True), runs, store)
    print(report.to_markdown())


def check_output_options(args: argparse.Namespace) -> None:
    """``--name`` is a base name of files in the report's folder, never a path; ``--out`` a folder that takes
    writes: both checked before anything is read, so no file lands outside where it was asked."""
    from kdbench.results.store import results_root_problem
    from kdbench.suite import SAFE_NAME

    if args.name is not None and (not SAFE_NAME.fullmatch(args.name) or ".." in args.name):
        shown = repr(args.name) if len(args.name) <= 80 else f"{args.name[:60]!r}... ({len(args.name)} characters)"
        raise UserError(
            f"--name {shown} is not a base name: 1-64 letters, digits, '.', '_', '-' or '+', starting with a "
            "letter or digit, without '..' (the files go under --out, or <results root>/<suite name>/)"
        )
    problem = results_root_problem(args.out, option="--out") if args.out is not None else None
    if problem:
        raise UserError(problem)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kdbench.results.report import write_report

    check_output_options(args)
    suite, runs = plan_from_args(args)
    store = store_from_args(args, runs.runs)
    report, frame = make_report(args, suite, runs, store)
    out = Path(store.suite_dir(suite.name) if args.out is None else args.out)
    try:
        written = write_report(report, frame, out, name=args.name)
    except OSError as error:  # a folder made read-only, a full disk: after the checks, before any file is whole
        raise UserError(f"cannot write the report under {out}: {error.strerror or error}") from None
    sys.stdout.write(report.render(args.format))
    from kdbench.explain.tables import explain_section  # kdbench explain's score tables, where they exist

    sys.stdout.write(explain_section(store.suite_dir(suite.name), written.get("markdown"), args.format))
    files = [p.name for key, p in written.items() if key != "plots"]
    lines = [f"wrote {', '.join(files)} under {out}"]
    if not args.no_plots:
        from kdbench.results.plots import curve_runs, curves_frame, plot_all
        from kdbench.results.practitioner import plot_practitioner  # KD vs no KD, size, FLOPs, confusion, per class

        curves = curves_frame(store.run_dir(run_id) for run_id in curve_runs(frame))
        try:
            summary = plot_all(frame, report, out, curves, plots_dir=written["plots"])
            practitioner = plot_practitioner(frame, report, store, written["plots"])
        except OSError as error:
            raise UserError(f"cannot write the plots under {written['plots']}: {error.strerror or error}") from None
        summary.written += practitioner.written
        summary.skipped.update(practitioner.skipped)
        names = sorted({p.stem for p in summary.written})
        lines.append(f"plots: {', '.join(names) or 'none'} (PNG and PDF under {written['plots']})")
        lines += [f"  skipped {name}: {reason}" for name, reason in summary.skipped.items()]
    print("\n".join(lines), file=sys.stderr)
    return 0
