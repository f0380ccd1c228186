"""What the sub-commands share: the suite argument, overrides, the results root, user errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from kdbench.errors import DataError, UserError
from kdbench.registry import UnknownNameError
from kdbench.results.store import ResultStore, results_root_problem
from kdbench.suite import Plan, RunSpec, Suite, load_suite, plan
from kdbench.validation import ValidationError

USER_ERRORS = (UserError, ValidationError, DataError, UnknownNameError)

EXIT_CODES = """exit status:
  0    success
  1    some runs failed or are blocked (kdbench run, kdbench status), or the results root stopped
       taking writes (a full disk): the suite stopped there
  2    a mistake in what was asked (a suite, an option, a missing file): nothing was trained
  130  interrupted (Ctrl-C, SIGTERM): finished epochs are kept; run the same command again to resume"""


def format_user_error(error: Exception) -> str:
    return f"kdbench: error: {error}"


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Examples keep their line breaks; a default is shown where there is one and the help does not say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def add_command(subparsers, name: str, *, help: str, description: str, example: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"example:\n  {example}\n\n{EXIT_CODES}",
        formatter_class=Formatter,
    )
    return parser


def add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", help="suite file (YAML), e.g. suites/smoke.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override suite keys before planning, e.g. schedule.epochs=2 seeds=[0] (values are YAML)",
    )
    parser.add_argument(
        "--results-dir",
        default=None,
        help="results root (default: $KDBENCH_RESULTS or ./results); runs live in <root>/runs/<run id>/",
    )
    parser.add_argument(
        "--data-root",
        default=None,
        help="where data sets live (default: the suite's dataset.root, $KDBENCH_DATA, ./data)",
    )


def load_suite_from_args(args: argparse.Namespace, *, quiet: bool = False) -> Suite:
    """The suite of ``args``; a teacher file that is not here takes the content the results root recorded
    for it (``ResultStore.recorded_teacher_files``), so its students are still found (``quiet``: say nothing)."""
    if not Path(args.suite).exists():
        raise UserError(f"suite file not found: {args.suite}")
    overrides = list(args.overrides)
    # --data-root only says where data lives (not part of a run's id), so it is an override like any other
    if getattr(args, "data_root", None):
        overrides.append(f"dataset.root={args.data_root}")
    suite = load_suite(args.suite, overrides)
    unknown = [path for path, sha256 in suite.teacher_files().items() if sha256 is None]
    if not unknown:
        return suite
    recorded = {path: sha256 for path, sha256 in _store_root(args).recorded_teacher_files().items() if path in unknown}
    if not recorded:
        return suite
    for path, sha256 in recorded.items():
        if not quiet:
            print(
                f"kdbench: teacher file {path} is not here; its students are looked up by the content recorded "
                f"when kdbench run last read it (SHA-256 {sha256[:12]}...)",
                file=sys.stderr,
            )
    return load_suite(args.suite, overrides, recorded_teacher_files=recorded)


def plan_from_args(args: argparse.Namespace) -> tuple[Suite, Plan]:
    suite = load_suite_from_args(args)
    planned = plan(suite)
    if planned.choice_runs:  # a chain's assistant chosen by TAKD's rule from the finished runs' top-1
        store = _store_root(args)
        store.adopt_legacy_runs(planned.runs)
        results = {run_id: store.result(run_id) for run_id in planned.choice_runs}
        planned = plan(suite, {run_id: r["top1_last"] for run_id, r in results.items() if r and "top1_last" in r})
    for note in planned.notes:
        print(f"kdbench: {note}", file=sys.stderr)
    return suite, planned


#: the commands that write under the results root: theirs must be writable before they start
WRITING_COMMANDS = frozenset({"run", "report", "cancel"})


def _store_root(args: argparse.Namespace) -> ResultStore:
    return ResultStore(getattr(args, "results_dir", None) or os.environ.get("KDBENCH_RESULTS") or "results")


def store_from_args(args: argparse.Namespace, runs: Sequence[RunSpec] = ()) -> ResultStore:
    """The results root of ``--results-dir`` (else $KDBENCH_RESULTS, else ./results); a user error when it
    is a regular file (or under one), or, for a command that writes, not writable.

    ``runs``: the plan's runs, some of which older kdbench may have stored under their teacher file's
    location (``ResultStore.adopt_legacy_runs`` finds and links them)."""
    store = _store_root(args)
    command = getattr(args, "command", None)
    problem = results_root_problem(store.root, writing=command in WRITING_COMMANDS)
    if problem:
        if not getattr(args, "results_dir", None):
            problem = problem.replace("--results-dir", "the results root ($KDBENCH_RESULTS or ./results)", 1)
        raise UserError(problem)
    found = store.adopt_legacy_runs(runs) if runs else {}
    for removed in store.removed_links:
        print(f"kdbench: removed the link {removed}: its folder is gone, so the run trains afresh", file=sys.stderr)
    if found:
        linked = all((store.root / "runs" / run_id).is_symlink() for run_id in found)
        print(
            f"kdbench: {len(found)} finished run(s) found under the id older kdbench gave them (by teacher file "
            "location; same file content)" + (", linked as runs/<id> -> <older id>" if linked else ""),
            file=sys.stderr,
        )
    return store


def unique_runs(runs: Sequence[RunSpec]) -> list[RunSpec]:
    """One entry per run id (a Vanilla student serves several pairs), plan order kept: a ``Plan``
    knows them already (``Plan.runs``); a filtered list of cells is reduced here."""
    if isinstance(runs, Plan):
        return list(runs.runs)
    seen: dict[str, RunSpec] = {}
    for spec in runs:
        seen.setdefault(spec.run_id, spec)
    return list(seen.values())
