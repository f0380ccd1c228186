"""The user-facing error classes: printed without a traceback, exit status 2. Imports nothing heavy."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for (a missing file, a bad option)."""


class DataError(Exception):
    """A data set that is missing or malformed on disk: a user-facing message, no traceback."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an error's message (torch's go on for paragraphs), else its type's name."""
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__


def count_of(number: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def data_root_hint(download: bool = True) -> str:
    """How to point kdbench at data that is elsewhere (the order ``kdbench.train.load_data`` reads it in),
    and, unless a download was just tried (``download=False``), how to have torchvision fetch it; the last
    sentence of every data set's "not found" message."""
    where = (
        "If it is elsewhere, say where: --data-root DIR (or dataset.root=DIR on the command line), the suite's "
        "dataset.root, or $KDBENCH_DATA (else ./data)."
    )
    fetch = " Or set `download: true` for the data set in the suite to let torchvision fetch it."
    return where + (fetch if download else "")
