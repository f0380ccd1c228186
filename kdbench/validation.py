"""One validation mechanism: collect every problem of a file, then raise once.

Suites, paper files, SLURM profiles and bench arguments are all checked the same way: a
``Collector`` gathers ``Problem`` (a dotted key path and a message naming the bad value and the
valid choices, nearest first), and ``ValidationError`` reports them together, naming the source.
This module imports nothing heavy, so every command can use it before torch is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kdbench.registry import nearest_first, suggestion


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


class ValidationError(ValueError):
    """Every problem of one source at once; ``str()`` is the user-facing message (a ``ValueError``, so
    callers that catch a bad value catch it too)."""

    def __init__(self, source: str, problems: Sequence[Problem]):
        self.source = source
        self.problems = list(dict.fromkeys(problems))  # one report per distinct problem
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        lines = [f"{self.source}: {count} problem{'s' if count != 1 else ''}:"]
        lines += [f"  - {p.path or '(top level)'}: {p.message}" for p in self.problems]
        return "\n".join(lines)


def join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


#: the limits of Linux file systems: a name of 255 bytes, a path of 4095
NAME_MAX, PATH_MAX = 255, 4095


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot name a file on this system (a NUL byte, a part over 255 bytes, over 4095 bytes in
    all), or None: checked before the operating system is asked, which would answer with a traceback."""
    shown = repr(path) if len(path) <= 80 else f"{path[:60]!r}... ({len(path)} characters)"
    if "\0" in path:
        return f"{shown} holds a NUL byte, which no file name can"
    encoded = path.encode("utf-8", errors="surrogateescape")
    if len(encoded) > PATH_MAX:
        return f"{shown} is {len(encoded)} bytes long; a path has at most {PATH_MAX}"
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        return f"{shown} has a part of {len(longest)} bytes; a file or folder name has at most {NAME_MAX}"
    return None


class Collector:
    """Gathers problems while a document is checked; ``raise_if_any`` ends the check."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def check_path(self, path: str, value: Any) -> bool:
        """``value`` (a string) can name a file here (``path_problem``); False, with the problem added, if not."""
        problem = path_problem(value) if isinstance(value, str) else None
        if problem:
            self.add(path, problem)
        return problem is None

    def has_problems_under(self, path: str) -> bool:
        return any(p.path == path or p.path.startswith(f"{path}.") for p in self.problems)

    def unknown_keys(self, path: str, mapping: Mapping, valid: Sequence[str]) -> None:
        for key in mapping:
            if key not in valid:
                choices = nearest_first(str(key), valid)
                close = suggestion(key, choices)
                hint = f" Did you mean '{close}'?" if close else ""
                self.add(join(path, key), f"unknown key '{key}'.{hint} Valid keys: {', '.join(choices)}")

    def check_type(self, path: str, value: Any, default: Any) -> bool:
        """``value`` must have ``default``'s type (an int is fine where a float is expected)."""
        if default is None:
            return True
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, (list, tuple)):
            ok = isinstance(value, (list, tuple))
        else:
            ok = isinstance(value, type(default))
        if not ok:
            self.add(path, f"expected {type(default).__name__}, got {describe(value)}")
        return ok

    def number(
        self,
        path: str,
        value: Any,
        *,
        minimum: float | None = None,
        above: float | None = None,
        below: float | None = None,
    ) -> float | None:
        """A finite number within bounds (``minimum`` inclusive, ``above``/``below`` exclusive), else a problem."""
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            self.add(path, f"expected a finite number, got {describe(value)}")
            return None
        bounds = []
        if minimum is not None and value < minimum:
            bounds.append(f">= {minimum:g}")
        if above is not None and value <= above:
            bounds.append(f"> {above:g}")
        if below is not None and value >= below:
            bounds.append(f"< {below:g}")
        if bounds:
            self.add(path, f"must be {' and '.join(bounds)}, got {value!r}")
            return None
        return float(value)

    def raise_if_any(self, source: str) -> None:
        if self.problems:
            raise ValidationError(source, self.problems)
