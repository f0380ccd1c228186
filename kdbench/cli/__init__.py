"""``kdbench``: one small module per sub-command; each exposes ``register(subparsers)`` and ``run(args)``."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from kdbench import __version__
from kdbench.cli.common import EXIT_CODES, USER_ERRORS, format_user_error

# the order sub-commands appear in --help; modules not listed follow alphabetically
ORDER = ["plan", "run", "status", "report", "explain", "cancel", "bench"]


class Parser(argparse.ArgumentParser):
    """argparse, except that an optional ``key=value`` list is not called required when the suite is missing."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = message.replace("required: suite, key=value", "required: suite")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="kdbench",
        description="Regenerate published knowledge-distillation results tables from one YAML suite.",
        epilog="Start with:  kdbench run suites/smoke.yaml   (CPU, about a minute)\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kdbench {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name != "common"]
    for name in sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n)):
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may come after options too (argparse stops filling a positional list at
    # the first option), so collect the stragglers here
    args, extras = parser.parse_known_args(argv)
    stray = [x for x in extras if x.startswith("-") or "=" not in x or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extras:
        args.overrides = [*args.overrides, *extras]
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:
        # the reader went away (`kdbench plan ... | head`): stop quietly, as other command-line tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except USER_ERRORS as error:
        print(format_user_error(error), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished epochs are checkpointed; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
