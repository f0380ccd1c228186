"""``kdbench --help`` and every ``kdbench <command> --help`` are instant: they import no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kdbench.cli import build_parser

HEAVY = ("torch", "torchvision", "pandas", "seaborn", "matplotlib", "submitit", "sklearn")
COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001


def heavy_modules_after(argv: list[str]) -> list[str]:
    """The heavy modules loaded by ``kdbench <argv>`` in a fresh interpreter."""
    probe = (
        "import sys\n"
        "from kdbench.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("HEAVY:"))
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]


def test_top_level_help_imports_nothing_heavy() -> None:
    assert heavy_modules_after(["--help"]) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_imports_nothing_heavy(command: str) -> None:
    assert heavy_modules_after([command, "--help"]) == []
