"""The SLURM commands kdbench runs (squeue, sacct, scancel), bounded in time, with errors that say what to do.

No submitit here: submission goes through submitit (``submission.py``); states and cancelling only
need the commands.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from kdbench.executors.base import ExecutorError

#: SLURM clients retry for minutes when slurmctld is down: give up after this long
COMMAND_TIMEOUT_S = 60


class SlurmError(ExecutorError):
    """The cluster refused or could not answer (no sbatch here, a bad partition, squeue failing)."""


@dataclass(frozen=True)
class JobInfo:
    """What SLURM says about one job (or array task): its state word, pending reason and requeue count."""

    job_id: str
    state: str
    reason: str = ""
    restarts: int = 0
    #: held by the controller (squeue); False: known from accounting only, so it has ended
    in_queue: bool = True


def slurm_command(args: list[str]) -> subprocess.CompletedProcess:
    """Run one SLURM client command; SlurmError when it is not installed here or does not answer."""
    if shutil.which(args[0]) is None:
        raise SlurmError(
            f"'{args[0]}' not found: run this on a SLURM login node (for the local test cluster: "
            f'eval "$(slurm/local-cluster.sh start)")'
        )
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        command = " ".join(args[:3])
        raise SlurmError(f"'{command} ...' did not answer in {COMMAND_TIMEOUT_S} s: is slurmctld up?") from None


def query_jobs(job_ids: Sequence[str]) -> dict[str, JobInfo]:
    """States of jobs and array tasks ("12", "13_4"): squeue for what the controller holds, then sacct for
    jobs that have left it. Ids neither knows are absent from the answer."""
    wanted = sorted(set(job_ids))
    if not wanted:
        return {}
    found: dict[str, JobInfo] = {}
    array_ids = sorted({job_id.split("_")[0] for job_id in wanted})
    queue = slurm_command(
        [
            "squeue",
            "--noheader",
            "--array",
            "--jobs",
            ",".join(array_ids),
            "--Format",
            "JobArrayID:|,State:|,Reason:|,RestartCnt:|",
        ]
    )
    if queue.returncode != 0 and "Invalid job id" not in queue.stderr:
        raise SlurmError(f"squeue failed: {queue.stderr.strip() or queue.stdout.strip()}")
    for line in queue.stdout.splitlines():
        parts = [part.strip() for part in line.split("|")]
        if len(parts) >= 4 and parts[0] in wanted:
            restarts = int(parts[3]) if parts[3].isdigit() else 0
            found[parts[0]] = JobInfo(parts[0], parts[1], parts[2], restarts)
    missing = [job_id for job_id in wanted if job_id not in found]
    if missing and shutil.which("sacct"):
        accounting = slurm_command(
            [
                "sacct",
                "--noheader",
                "--parsable2",
                "--allocations",
                "--jobs",
                ",".join(missing),
                "--format",
                "JobID,State,Reason",
            ]
        )
        # No accounting on this cluster: jobs that left the queue are simply unknown.
        for line in accounting.stdout.splitlines() if accounting.returncode == 0 else []:
            parts = line.split("|")
            if len(parts) >= 2 and parts[0] in missing:
                state = parts[1].split()[0] if parts[1].split() else "UNKNOWN"
                found[parts[0]] = JobInfo(parts[0], state, parts[2] if len(parts) > 2 else "", in_queue=False)
    return found


def scancel(job_ids: Sequence[str]) -> None:
    """Cancel jobs and array tasks; one that ended meanwhile is no error (it no longer needs cancelling)."""
    if job_ids:
        done = slurm_command(["scancel", *job_ids])
        if done.returncode != 0 and "already completed" not in done.stderr and "Invalid job id" not in done.stderr:
            raise SlurmError(f"scancel failed: {done.stderr.strip()}")
