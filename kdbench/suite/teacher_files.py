"""A teacher file counts by its content, not its location: the SHA-256 of its bytes enters the run
ids of its students, the path does not. Moving the same file to another mount keeps every student's
id; changing the file's bytes makes new runs.

The hash is read when the suite is loaded (about 1 GB/s; a CRD teacher is 1-100 MB) and kept per
process for a file whose size and modification time have not changed. When the file is not here
(results copied to a laptop), ``recorded`` (what ``kdbench run`` noted in the results root when it
last read the file: ``ResultStore.recorded_teacher_files``) says what it held. A file that is
neither here nor recorded has no known content: its students keep the id older kdbench gave them
(by location), and ``kdbench run`` refuses them before training (``kdbench.preflight``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def teacher_file_sha256(path: str, recorded: Mapping[str, str] | None = None) -> str | None:
    """The SHA-256 of the teacher file ``path`` (as the suite writes it), or what ``recorded`` says it
    held when the file is not here, or None."""
    expanded = os.path.expanduser(path)
    try:
        stat = os.stat(expanded)
        if not os.path.isfile(expanded):
            raise FileNotFoundError(expanded)
        key = (os.path.realpath(expanded), stat.st_size, stat.st_mtime_ns)
        if key not in _HASHES:
            _HASHES[key] = file_sha256(expanded)
        return _HASHES[key]
    except OSError:  # missing, a folder, unreadable: preflight names the problem; the record may know it
        return (recorded or {}).get(path)
