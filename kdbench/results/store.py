"""The result store: one directory per run, content-addressed by run id.

``<root>/runs/<run_id>/``: ``spec.yaml`` (the resolved config), ``metrics.jsonl`` (one line per
epoch), ``checkpoint.pt`` (written to a temporary file, then renamed), ``model.pt`` (the trained
student, CRD format), ``result.json`` (written last: its presence means "done"), ``failed.json``
(why a run stopped), ``train.log``. Reports go to ``<root>/<suite name>/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from kdbench.suite import RunSpec

DONE, FAILED, RUNNING, INTERRUPTED, PENDING, NOT_APPLICABLE = (
    "done",
    "failed",
    "running",
    "interrupted",
    "pending",
    "na",
)


class RunLocked(Exception):
    """Another process is training this run."""


def default_results_root() -> Path:
    return Path(os.environ.get("KDBENCH_RESULTS", "results"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())


class ResultStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_results_root()

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def suite_dir(self, suite_name: str) -> Path:
        return self.root / suite_name

    def write_spec(self, spec: RunSpec) -> Path:
        """Create the run directory with its spec (idempotent: the content depends only on the run)."""
        run_dir = self.run_dir(spec.run_id)
        path = run_dir / "spec.yaml"
        text = yaml.safe_dump(spec.to_dict(), sort_keys=True)
        if not path.exists() or path.read_text() != text:
            atomic_write_bytes(path, text.encode())
        return run_dir

    def status(self, run_id: str) -> str:
        run_dir = self.run_dir(run_id)
        if (run_dir / "result.json").exists():
            return DONE
        if (run_dir / "failed.json").exists():
            return FAILED
        if self.is_locked(run_id):
            return RUNNING
        if (run_dir / "checkpoint.pt").exists():
            return INTERRUPTED
        return PENDING

    def result(self, run_id: str) -> dict | None:
        return _read_json(self.run_dir(run_id) / "result.json")

    def failure(self, run_id: str) -> dict | None:
        return _read_json(self.run_dir(run_id) / "failed.json")

    def clear_failure(self, run_id: str) -> None:
        """Before a retry: keep the old reason beside the run, never silently drop it."""
        failed = self.run_dir(run_id) / "failed.json"
        if failed.exists():
            attempts = sorted(self.run_dir(run_id).glob("failed.*.json"))
            os.replace(failed, failed.with_name(f"failed.{len(attempts) + 1}.json"))

    @contextlib.contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """Exclusive right to train this run; raises RunLocked at once if another process has it."""
        path = self.run_dir(run_id) / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLocked(run_id) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()} {os.uname().nodename}\n")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def is_locked(self, run_id: str) -> bool:
        path = self.run_dir(run_id) / ".lock"
        if not path.exists():
            return False
        with open(path) as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


RESULT_COLUMNS = [
    "top1_last",
    "top5_last",
    "top1_best",
    "top5_best",
    "test_loss_last",
    "epochs",
    "wall_time_s",
    "student_params",
    "student_flops",
    "teacher_top1",
]


def results_frame(runs: Sequence[RunSpec], store: ResultStore):  # -> pandas.DataFrame
    """One row per planned (run, report cell): the long-form frame every report is pivoted from.

    Each distinct run's files are read once, by a small thread pool (reading thousands of small files
    is latency-bound, on shared cluster storage most of all).
    """
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    distinct: dict[str, RunSpec] = {}
    for spec in runs:
        distinct.setdefault(spec.run_id, spec)

    def read(spec: RunSpec) -> tuple[str, dict | None, str | None, str]:
        if spec.not_applicable:
            return NOT_APPLICABLE, None, None, ""
        result = store.result(spec.run_id)
        status = DONE if result is not None else store.status(spec.run_id)
        failure = (store.failure(spec.run_id) or {}).get("reason") if status == FAILED else None
        params = json.dumps({"terms": spec.config()["terms"], "ce_weight": spec.ce_weight}, sort_keys=True)
        return status, result, failure, params

    with ThreadPoolExecutor(max_workers=16) as pool:
        records = dict(zip(distinct, pool.map(read, distinct.values()), strict=True))

    rows = []
    for spec in runs:
        status, result, failure, params = records[spec.run_id]
        result = result or {}
        row = {
            "run_id": spec.run_id,
            "suite": spec.suite,
            "dataset": spec.dataset["name"],
            "kind": spec.kind,
            "teacher": spec.pair_teacher or spec.teacher,
            "student": spec.student,
            "method": spec.method,
            "terms": "+".join(name for name, _ in spec.terms),
            "params": params,
            "sweep": json.dumps(spec.sweep, sort_keys=True),
            "seed": spec.seed,
            "status": status,
            "na_reason": spec.not_applicable,
            "failure": failure,
        }
        for column in RESULT_COLUMNS:
            row[column] = result.get(column)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else ["run_id"])
    for column in RESULT_COLUMNS:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame
