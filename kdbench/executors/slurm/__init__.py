"""Run a suite on a SLURM cluster through submitit: job arrays per dependency level, requeue on preemption.

The parts, one module each:

- ``jobs``: what a job runs (``TrainJob``: one run; ``PackedTrainJob``: ``runs_per_job`` runs at once),
  submitit ``Checkpointable`` so a preempted or timed-out job requeues and resumes exactly;
- ``submission``: ``submit_suite`` (teachers' array, then each teacher's students held ``afterok``;
  packing; idempotent and serialised by a lock under the results root) and ``cancel_runs``;
- ``records``: each submitted run's ``slurm.json``;
- ``states``: a run's state from its files, squeue/sacct and its teacher (``slurm_states``,
  ``wait_for_suite``);
- ``commands``: the squeue / sacct / scancel calls;
- ``executor``: ``SlurmExecutor``, the interface the CLI talks to; ``profiles/``: the shipped profiles.

submitit is imported by ``jobs`` and ``submission`` only (nothing outside this package imports it), and
only when one of their names is first used: ``kdbench status`` on SLURM runs works where submitit is
not installed (a GPU node), and submitting there says what to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kdbench.executors.profile import Profile, load_profile
from kdbench.executors.slurm.commands import JobInfo, SlurmError, query_jobs, scancel
from kdbench.executors.slurm.executor import EXECUTOR, SlurmExecutor
from kdbench.executors.slurm.records import RECORD, read_record
from kdbench.executors.slurm.states import slurm_states, state_from_job, wait_for_suite
from kdbench.lifecycle import RunState, describe_state

if TYPE_CHECKING:
    from kdbench.executors.slurm.jobs import PackedTrainJob, PackFailed, TrainJob
    from kdbench.executors.slurm.submission import (
        SubmitSummary,
        array_executor,
        cancel_runs,
        job_for,
        pack_runs,
        submit_suite,
    )

#: names of the modules that import submitit, imported on first use
_NEEDS_SUBMITIT = {
    "PackedTrainJob": "jobs",
    "PackFailed": "jobs",
    "TrainJob": "jobs",
    "SubmitSummary": "submission",
    "array_executor": "submission",
    "cancel_runs": "submission",
    "job_for": "submission",
    "pack_runs": "submission",
    "submit_suite": "submission",
}


def __getattr__(name: str) -> Any:
    if name in _NEEDS_SUBMITIT:
        return getattr(importlib.import_module(f"{__name__}.{_NEEDS_SUBMITIT[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EXECUTOR",
    "RECORD",
    "JobInfo",
    "PackFailed",
    "PackedTrainJob",
    "Profile",
    "RunState",
    "SlurmError",
    "SlurmExecutor",
    "SubmitSummary",
    "TrainJob",
    "array_executor",
    "cancel_runs",
    "describe_state",
    "job_for",
    "load_profile",
    "pack_runs",
    "query_jobs",
    "read_record",
    "scancel",
    "slurm_states",
    "state_from_job",
    "submit_suite",
    "wait_for_suite",
]
