"""``kdbench``: one small module per sub-command; each exposes ``register(subparsers)`` and ``run(args)``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from kdbench import __version__
from kdbench.cli.common import USER_ERRORS, format_user_error

# the order sub-commands appear in --help; modules not listed follow alphabetically
ORDER = ["plan", "run", "status", "report", "explain", "cancel", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdbench",
        description="Regenerate published knowledge-distillation results tables from one YAML suite.",
        epilog="Start with:  kdbench run suites/smoke.yaml   (CPU, about two minutes)",
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
    except USER_ERRORS as error:
        print(format_user_error(error), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished epochs are checkpointed; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
