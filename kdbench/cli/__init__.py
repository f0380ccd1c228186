"""``kdbench``: one small module per sub-command; each exposes ``register(subparsers)`` and ``run(args)``."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import shlex
import signal
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
    previous_sigterm = _sigterm_as_interrupt()
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
    except KeyboardInterrupt as interrupt:
        how = "terminated (SIGTERM)" if isinstance(interrupt, Terminated) else "interrupted"
        again = shlex.join(["kdbench", *(argv if argv is not None else sys.argv[1:])])
        print(f"\n{how}: finished epochs are checkpointed; to resume, run the same command: {again}", file=sys.stderr)
        return 130
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it ends as Ctrl-C does: runs stop, a message says how to
    resume, exit status 130 (not a silent -15)."""


def _sigterm_as_interrupt() -> object:  # the previous handler; None outside the main thread
    """Turn SIGTERM into ``Terminated`` for the command's duration (signals reach the main thread only)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    return signal.signal(signal.SIGTERM, terminate)


if __name__ == "__main__":
    sys.exit(main())
