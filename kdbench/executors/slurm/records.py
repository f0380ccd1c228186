"""``slurm.json``: each submitted run's record of its job (the latest submission, earlier ones kept).

Fields: ``job_id`` ("12" or "13_4"), ``array_job_id``, ``array_index``, ``dependency``, ``submitted_at``
(UTC, ISO), ``stdout`` / ``stderr`` (the job's logs), ``profile``, ``slurm_conf``, with packing ``pack``
(every run the job trains) and ``runs_per_job``, and ``previous`` (the earlier records, oldest first).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from kdbench.executors.profile import Profile
from kdbench.results.store import ResultStore, atomic_write_json

if TYPE_CHECKING:
    import submitit

#: the file name in a run's directory (also ``EXECUTORS``'s record file of the slurm executor)
RECORD = "slurm.json"


def read_record(store: ResultStore, run_id: str) -> dict | None:
    """The run's slurm.json: its latest submission, with the earlier ones under "previous"."""
    try:
        return json.loads((store.run_dir(run_id) / RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_record(
    store: ResultStore,
    run_id: str,
    job: submitit.Job,
    dependency: str | None,
    profile: Profile,
    pack: Sequence[str] | None = None,
) -> None:
    """Record the run's new submission; ``pack``: every run its job trains (``runs_per_job`` > 1 only)."""
    previous = read_record(store, run_id)
    history = []
    if previous:
        history = previous.pop("previous", [])
        history.append(previous)
    array_id, _, index = str(job.job_id).partition("_")
    packing = {} if pack is None else {"pack": list(pack), "runs_per_job": profile.runs_per_job}
    atomic_write_json(
        store.run_dir(run_id) / RECORD,
        {
            "job_id": str(job.job_id),
            "array_job_id": array_id,
            "array_index": int(index) if index else None,
            "dependency": dependency,
            "submitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "stdout": str(job.paths.stdout),
            "stderr": str(job.paths.stderr),
            "profile": profile.source,
            "slurm_conf": os.environ.get("SLURM_CONF"),
            **packing,
            "previous": history,
        },
    )
