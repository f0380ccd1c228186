"""The result store: one directory per run, content-addressed by run id.

``<root>/runs/<run_id>/``: ``spec.yaml`` (the resolved config), ``metrics.jsonl`` (one line per
epoch), ``checkpoint.pt`` (written to a temporary file, then renamed; the one before it kept as
``checkpoint.prev.pt``, the fallback when the newest is damaged), ``model.pt`` (the trained student, CRD
format), ``result.json`` (written last: a readable one means "done"; a damaged one is set aside as
``result.damaged.json`` and rebuilt or retrained), ``failed.json`` (why a run stopped: written by
``write_failure`` only), ``.lock`` (held while a process trains it).
``runs/<run id>`` may be a symbolic link to a folder older kdbench named by the run's teacher file
location (``adopt_legacy_runs``); ``.teacher-files/`` notes what each teacher file held (``record_teacher_files``).
Reports go to ``<root>/<suite name>/``. A run's status (``kdbench.lifecycle.RunStatus``) is read from
these files alone; executors add what their jobs say.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from kdbench.errors import UserError
from kdbench.lifecycle import RunState, RunStatus, with_blocked_students
from kdbench.results.schema import ResultUnreadable, read_result
from kdbench.suite import RunSpec

# The status words as the store uses them (one vocabulary: kdbench.lifecycle.RunStatus).
DONE, FAILED, RUNNING, INTERRUPTED, PENDING, BLOCKED, NOT_APPLICABLE = (
    RunStatus.DONE,
    RunStatus.FAILED,
    RunStatus.RUNNING,
    RunStatus.INTERRUPTED,
    RunStatus.PENDING,
    RunStatus.BLOCKED,
    RunStatus.NOT_APPLICABLE,
)
FAILURE_FILE = "failed.json"
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
#: the checkpoint before the newest: kept until the newest is written whole, the fallback when it is damaged
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"
METRICS_FILE = "metrics.jsonl"
#: under the results root: what each teacher file held when kdbench run last read it (one record per path)
TEACHER_FILES_DIR = ".teacher-files"
#: the files only the process holding a run's lock writes
TRAINED_FILES = (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE, METRICS_FILE, RESULT_FILE, "model.pt", "selected.pt")
#: errors of a store that cannot take a write: the suite stops (every later run would fail the same way)
UNWRITABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class RunLocked(Exception):
    """Another process is training this run."""


class ResultsUnwritable(UserError):
    """The results root takes no more writes (a full disk or quota, a read-only mount): stop the suite with
    one message rather than fail every run after it the same way."""


def is_unwritable(error: BaseException) -> bool:
    """A full disk, a full quota or a read-only file system (not a fault of the run)."""
    return isinstance(error, OSError) and error.errno in UNWRITABLE_ERRNOS


def results_root_problem(root: str | Path, *, writing: bool = True, option: str = "--results-dir") -> str | None:
    """Why ``root`` cannot serve as the results root (or the folder ``option`` names): a path the system
    cannot take, a regular file on its path, with ``writing`` no write permission; or None. Checked before a
    command starts, so that its first read or write does not fail with a traceback after compute is spent."""
    from kdbench.validation import path_problem

    problem = path_problem(str(root))
    if problem:
        return f"{option}: {problem}"
    root = Path(root)
    existing = root
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "it" if existing == root else f"{existing}, on its path,"
        return f"{option} {root}: {where} is a regular file, not a folder; name a folder (it is created)"
    if writing:
        try:  # a real write: permissions, a read-only mount and a full quota all answer here
            fd, probe = tempfile.mkstemp(dir=existing, prefix=".kdbench-write-check.")
        except OSError as error:
            where = "" if existing == root else f" ({existing} exists and the rest would be created in it)"
            reason = error.strerror or str(error)
            return f"{option} {root}: cannot write there ({reason}){where}; name a folder you can write to"
        os.close(fd)
        os.unlink(probe)
    return None


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
        #: run id -> the folder under runs/ it is stored in, where that is another name (``adopt_legacy_runs``)
        self._stored_as: dict[str, str] = {}
        #: links runs/<id> -> <older id> whose folder was gone, removed by ``adopt_legacy_runs``
        self.removed_links: list[str] = []
        #: runs found under their older id that could not be linked (known to this store only)
        self.unlinked: list[str] = []

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / self._stored_as.get(run_id, run_id)

    def adopt_legacy_runs(self, runs: Sequence[RunSpec]) -> dict[str, str]:
        """Find the runs that older kdbench stored under their teacher file's location
        (``RunSpec.legacy_run_id``); run id -> the folder it was found in.

        A run is found there when that folder records a teacher file with the same content (``teacher_sha256``
        in its result.json, or, for a run left unfinished, in its checkpoint), or, for a chain's later link,
        when it was distilled from the very teacher run this link's teacher was found as. A symbolic link
        ``runs/<run id> -> <older id>`` makes it lasting (training processes and SLURM jobs open stores of
        their own; older kdbench still finds the folder by its own name); where the root takes no writes, it
        holds for this store. Nothing is moved. A link whose folder is gone is removed (``removed_links``)."""
        runs_dir = self.root / "runs"
        found: dict[str, str] = {}
        for spec in runs:  # plan order: a chain's links come after the teacher run they load
            legacy = spec.legacy_run_id
            link = runs_dir / spec.run_id
            if link.is_symlink() and not link.exists():  # its folder was deleted: the run is to train afresh
                target = os.readlink(link)
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()
                self.removed_links.append(f"runs/{spec.run_id} -> {target}")
            if not legacy or spec.run_id in self._stored_as or os.path.lexists(link):
                continue
            recorded = self._legacy_record(legacy)
            if recorded is None:
                continue
            legacy_spec, teacher_sha256 = recorded
            if spec.teacher_sha256:
                if teacher_sha256 != spec.teacher_sha256:
                    continue  # trained from other bytes at that path: another run
            else:  # a later link: its teacher run must be the one this link's teacher was found as
                teacher = spec.teacher_run or ""
                found_as = self.stored_under(teacher)
                if found_as == teacher or legacy_spec.get("teacher_run") != found_as:
                    continue
            self._stored_as[spec.run_id] = legacy
            found[spec.run_id] = legacy
            try:
                os.symlink(legacy, link, target_is_directory=True)
            except FileExistsError:  # a concurrent command linked it first
                pass
            except OSError:  # a root that takes no writes, or no symbolic links: found for this store only
                self.unlinked.append(spec.run_id)
        return found

    def _legacy_record(self, run_id: str) -> tuple[dict, str | None] | None:
        """(the run's config as stored, the SHA-256 of the teacher file it trained from) of a folder older
        kdbench wrote: from its result.json, else (unfinished) its spec.yaml and newest readable checkpoint;
        None when it holds nothing trained."""
        result = self.result(run_id)
        if result is not None:
            return dict(result.get("spec") or {}), result.get("teacher_sha256")
        run_dir = self.run_dir(run_id)
        checkpoints = [run_dir / name for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE)]
        if not any(path.is_file() for path in checkpoints):
            return None
        try:
            stored = yaml.safe_load((run_dir / "spec.yaml").read_text()) or {}
        except (OSError, ValueError, yaml.YAMLError):
            return None
        import torch

        for path in checkpoints:
            try:
                state = torch.load(path, map_location="cpu", weights_only=False)
            except Exception:  # damaged or absent: the older one may serve
                continue
            info = state.get("teacher_info") if isinstance(state, dict) else None
            return dict(stored), (info or {}).get("teacher_sha256")
        return None

    def stored_under(self, run_id: str) -> str:
        """The folder name under runs/ that holds ``run_id``: itself, or the older id it was found under."""
        if run_id in self._stored_as:
            return self._stored_as[run_id]
        path = self.root / "runs" / run_id
        return os.readlink(path) if path.is_symlink() else run_id

    def record_teacher_files(self, runs: Sequence[RunSpec]) -> None:
        """Note what each teacher file the runs load holds (path as the suite writes it -> SHA-256), so that
        its students are found where the file is not (results copied elsewhere: ``recorded_teacher_files``)."""
        import hashlib

        folder = self.root / TEACHER_FILES_DIR
        for path, sha256 in {s.teacher_checkpoint: s.teacher_sha256 for s in runs if s.teacher_sha256}.items():
            record_path = folder / f"{hashlib.sha256(str(path).encode()).hexdigest()[:16]}.json"
            with contextlib.suppress(OSError, ValueError):
                if (_read_json(record_path) or {}).get("sha256") == sha256:
                    continue
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            record = {"path": path, "sha256": sha256, "recorded": now}
            with contextlib.suppress(OSError):  # a convenience for later: a root that takes no writes stops the run
                atomic_write_json(record_path, record)

    def refresh_teacher_file_specs(self, runs: Sequence[RunSpec]) -> None:
        """Rewrite the stored spec.yaml of the runs of a teacher file that exist, where it names the file
        elsewhere: the run is the same (its id holds the content), and a later repair (a teacher's damaged
        model.pt rebuilt from its checkpoint) must load the file where it is now."""
        for spec in runs:
            if spec.teacher_sha256 and (self.run_dir(spec.run_id) / "spec.yaml").exists():
                with contextlib.suppress(OSError):
                    self.write_spec(spec)

    def recorded_teacher_files(self) -> dict[str, str]:
        """Teacher file path -> the SHA-256 of its content when ``kdbench run`` last read it here."""
        records: dict[str, str] = {}
        folder = self.root / TEACHER_FILES_DIR
        for record_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            with contextlib.suppress(OSError, ValueError):
                record = _read_json(record_path) or {}
                if isinstance(record.get("path"), str) and isinstance(record.get("sha256"), str):
                    records[record["path"]] = record["sha256"]
        return records

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

    def status(self, run_id: str) -> RunStatus:
        """The run's own status from its files: done, failed, running (locked), interrupted or pending.

        Done means a result.json that reads (``kdbench.results.schema.read_result``): a damaged one is not
        done, and the next ``kdbench run`` rebuilds or retrains it. Whether a teacher blocks a run is a
        question about the suite: see ``states``."""
        run_dir = self.run_dir(run_id)
        if self.result(run_id) is not None:
            return DONE
        if (run_dir / FAILURE_FILE).exists():
            return FAILED
        if self.is_locked(run_id):
            return RUNNING
        if (run_dir / CHECKPOINT_FILE).exists() or (run_dir / PREVIOUS_CHECKPOINT_FILE).exists():
            return INTERRUPTED
        return PENDING

    def state(self, run_id: str) -> RunState:
        """The run's own status with why: the failure's reason, who trains it, the epochs done."""
        status = self.status(run_id)
        if status == FAILED:
            failure = self.failure(run_id) or {}
            stage = f" ({failure['stage']})" if failure.get("stage") else ""
            return RunState(status, detail=f"{failure.get('reason', FAILURE_FILE)}{stage}")
        epochs = self.epochs_done(run_id)
        done = f"{epochs} epoch(s) done" if epochs else ""
        if status == RUNNING:
            holder = self.lock_holder(run_id)
            return RunState(status, detail=", ".join(part for part in (holder, done or "starting") if part))
        damaged = self.result_problem(run_id)
        if damaged:
            done = f"{done + '; ' if done else ''}result.json is damaged (kdbench run rebuilds or retrains it)"
        return RunState(status, detail=done if status in (INTERRUPTED, PENDING) else "")

    def states(self, runs: Sequence[RunSpec]) -> dict[str, RunState]:
        """Every run's state from the files alone (one entry per run id, NA runs included), students of a
        failed teacher blocked."""
        states = {
            spec.run_id: RunState(NOT_APPLICABLE, detail=spec.not_applicable)
            if spec.not_applicable
            else self.state(spec.run_id)
            for spec in runs
        }
        return with_blocked_students(runs, states)

    def epochs_done(self, run_id: str) -> int:
        """Complete epoch records in metrics.jsonl (it mirrors the checkpoint; a torn line is not one)."""
        return len(_metric_lines(self.run_dir(run_id) / METRICS_FILE)[0])

    def result(self, run_id: str) -> dict | None:
        """The run's result record; None when there is none or it is damaged (then the run is not done)."""
        try:
            return read_result(self.run_dir(run_id) / RESULT_FILE)
        except ResultUnreadable:
            return None

    def result_problem(self, run_id: str) -> str | None:
        """Why the run's result.json is damaged (empty, truncated, not UTF-8, not a JSON object, a required field
        missing or of the wrong type: ``kdbench.results.schema.read_result``), or None."""
        try:
            read_result(self.run_dir(run_id) / RESULT_FILE)
        except ResultUnreadable as error:
            return str(error)
        return None

    def set_aside_result(self, run_id: str) -> Path:
        """Move a damaged result.json to result.damaged.json (kept to look at, never read as a result)."""
        path = self.run_dir(run_id) / RESULT_FILE
        kept = path.with_name("result.damaged.json")
        os.replace(path, kept)
        return kept

    def repair_metrics(self, run_id: str) -> str | None:
        """Rewrite a damaged metrics.jsonl (bytes that are not UTF-8, a torn or garbled line) from the
        checkpoint's epoch records (the source of truth), else from its own complete lines; what was done,
        or None when the file was whole. The damaged file is kept as metrics.damaged.jsonl. Call it while
        no process trains the run (its last line may be mid-write then)."""
        path = self.run_dir(run_id) / METRICS_FILE
        records, damaged = _metric_lines(path)
        if not damaged:
            return None
        from_checkpoint = self.checkpoint_metrics(run_id)
        source = "its complete lines"
        if from_checkpoint is not None and len(from_checkpoint) >= len(records):
            records, source = from_checkpoint, "the checkpoint"
        os.replace(path, path.with_name("metrics.damaged.jsonl"))
        atomic_write_bytes(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())
        kept = "the old file kept as metrics.damaged.jsonl"
        return f"{path}: {damaged}; rewritten from {source} ({len(records)} epochs; {kept})"

    def checkpoint_metrics(self, run_id: str) -> list[dict] | None:
        """The epoch records of the run's newest readable checkpoint (checkpoint.pt, else checkpoint.prev.pt)."""
        import torch

        for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE):
            path = self.run_dir(run_id) / name
            if not path.is_file():
                continue
            try:
                state = torch.load(path, map_location="cpu", weights_only=False)
            except Exception:  # a damaged file: try the older one
                continue
            if isinstance(state, dict) and isinstance(state.get("metrics"), list):
                return state["metrics"]
        return None

    def remove_stale_temporaries(self, run_id: str) -> None:
        """Delete the temporary files of writes a killed trainer never finished (call it holding the lock).

        Only of the files written under the lock: spec.yaml, failed.json and an executor's record may be
        written by another process right now, without it."""
        for name in TRAINED_FILES:
            for leftover in self.run_dir(run_id).glob(f".{name}.*tmp"):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()

    def failure(self, run_id: str) -> dict | None:
        """The run's failed.json (see ``write_failure``), or None; a damaged one reads as a failure that says so."""
        path = self.run_dir(run_id) / FAILURE_FILE
        try:
            return _read_json(path)
        except (ValueError, UnicodeDecodeError):
            return {"reason": f"{path} is damaged (the reason is lost); --retry-failed trains the run again"}

    def clear_failure(self, run_id: str) -> None:
        """Before a retry: keep the old reason beside the run, never silently drop it."""
        failed = self.run_dir(run_id) / FAILURE_FILE
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

    def lock_holder(self, run_id: str) -> str:
        """Who holds (or last held) the run's lock: ``pid 123 on node7``, or "" when unknown."""
        try:
            pid, host = (self.run_dir(run_id) / ".lock").read_text().split()[:2]
        except (FileNotFoundError, ValueError):
            return ""
        return f"pid {pid} on {host}"

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


#: Functions of the training code whose failures belong to a stage other than an epoch's (by name: the
#: stage is read off the traceback, so kdbench.train needs no bookkeeping for it).
_STAGE_OF_FUNCTION = {
    "read_spec": "setup",
    "load_data": "data",
    "load_dataset": "data",
    "make_loaders": "data",
    "build_teacher": "teacher",
    "load_weights": "teacher",
}


def failure_stage(error: BaseException) -> str:
    """Where a run failed: ``setup``, ``data``, ``teacher``, ``epoch N`` (1-based) or ``result``.

    An exception may say it itself (a ``stage`` attribute); otherwise it is read off the traceback: the
    innermost training function it passed through that has a stage (``_STAGE_OF_FUNCTION``), else the
    training loop's epoch: the outermost of kdbench's frames with an ``int`` local named ``epoch`` (the
    loop's 0-based counter; inner frames such as a loader's ``epoch(0)`` for the test split do not count),
    ``result`` once every epoch is in that frame's ``metrics``.
    """
    declared = getattr(error, "stage", None)
    if isinstance(declared, str) and declared:
        return declared
    stage, in_loop = "setup", False
    for frame, _ in traceback.walk_tb(error.__traceback__):
        if not str(frame.f_globals.get("__name__", "")).startswith("kdbench."):
            continue
        epoch = frame.f_locals.get("epoch")
        if frame.f_code.co_name in _STAGE_OF_FUNCTION:
            stage = _STAGE_OF_FUNCTION[frame.f_code.co_name]
        elif not in_loop and isinstance(epoch, int) and not isinstance(epoch, bool):
            in_loop, metrics = True, frame.f_locals.get("metrics")
            stage = "result" if isinstance(metrics, list) and len(metrics) > epoch else f"epoch {epoch + 1}"
    return stage


def write_failure(
    run_dir: str | Path, error: BaseException, *, expected: bool, stage: str | None = None
) -> dict[str, Any]:
    """Record why a run stopped in its failed.json (the one writer of that file); the record.

    One shape: ``reason`` (the message; an unexpected error's is prefixed with its type), ``type`` (the
    exception's class), ``stage`` (``failure_stage``), ``time`` (UTC, ISO 8601, seconds) and, for an
    unexpected error only (``expected=False``: a bug or a broken environment, not a run that failed on its
    own terms such as a non-finite loss), ``traceback``. Call it inside the ``except`` that caught ``error``.
    """
    kind = type(error).__name__
    record: dict[str, Any] = {
        "reason": str(error) if expected else f"{kind}: {error}",
        "type": kind,
        "stage": stage or failure_stage(error),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if not expected:
        record["traceback"] = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    atomic_write_json(Path(run_dir) / FAILURE_FILE, record)
    return record


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _metric_lines(path: Path) -> tuple[list[dict], str]:
    """The complete epoch records of a metrics.jsonl, and what is damaged in it ("" when nothing)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], ""
    problems: list[str] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        problems.append(f"bytes that are not UTF-8 at offset {error.start}")
        text = data.decode("utf-8", errors="replace")
    records: list[dict] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        problems.append("a torn last line")
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif number < len(lines) or not problems or "torn" not in problems[-1]:
            problems.append(f"line {number} is not a JSON record")
    # a torn last line that still parses is complete, only its newline was lost
    return records, "; ".join(dict.fromkeys(problems))


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


def stored_numbers(result: dict) -> dict[str, float]:
    """The numbers of a result record: top-level ones by their key, those of a nested mapping as 'outer.inner'."""

    def is_number(value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    numbers: dict[str, float] = {}
    for key, value in result.items():
        if is_number(value):
            numbers[key] = value
        elif isinstance(value, dict) and key != "spec":
            numbers.update({f"{key}.{inner}": number for inner, number in value.items() if is_number(number)})
    return numbers


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

    repairs: list[str] = []

    def read(spec: RunSpec) -> tuple[RunStatus, dict | None, str | None, str]:
        if spec.not_applicable:
            return NOT_APPLICABLE, None, None, ""
        result = store.result(spec.run_id)
        status = DONE if result is not None else store.status(spec.run_id)
        if status != RUNNING:  # a run being trained may be writing its last line
            with contextlib.suppress(OSError):
                repaired = store.repair_metrics(spec.run_id)
                if repaired:
                    repairs.append(f"repaired {spec.run_id}: {repaired}")  # list.append: safe across the pool
        failure = (store.failure(spec.run_id) or {}).get("reason") if status == FAILED else None
        params = json.dumps({"terms": spec.config()["terms"], "ce_weight": spec.ce_weight}, sort_keys=True)
        return status, result, failure, params

    with ThreadPoolExecutor(max_workers=16) as pool:
        records = dict(zip(distinct, pool.map(read, distinct.values()), strict=True))
    # students of a failed teacher: blocked, as kdbench status says
    blocked = with_blocked_students(
        list(distinct.values()), {run_id: RunState(record[0]) for run_id, record in records.items()}
    )

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
            "status": blocked[spec.run_id].status.value,
            # the folder under runs/ when it is not the run id (a run found under the id older kdbench gave it)
            "stored_as": None if store.stored_under(spec.run_id) == spec.run_id else store.stored_under(spec.run_id),
            "na_reason": spec.not_applicable,
            # a blocked student's reason is its teacher's failure, as kdbench status says
            "failure": failure or (blocked[spec.run_id].detail if status != blocked[spec.run_id].status else None),
        }
        for column in RESULT_COLUMNS:
            row[column] = result.get(column)
        row["schedule"] = json.dumps(spec.schedule, sort_keys=True)
        # every other number the result stores (best_epoch, weighted_f1_selected, ...): kdbench report --metric
        row.update({key: value for key, value in stored_numbers(result).items() if key not in row})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else ["run_id"])
    frame.attrs["repairs"] = repairs  # what reading the runs repaired (a torn metrics.jsonl): the report says it
    for column in RESULT_COLUMNS:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame
