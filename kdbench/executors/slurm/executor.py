"""The SLURM executor behind the ``Executor`` interface: profiles, submission, states, cancel, wait."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from kdbench.executors.base import Executor, ExecutorError, Log, RunOptions
from kdbench.executors.profile import Profile, load_profile
from kdbench.executors.slurm.records import RECORD
from kdbench.executors.slurm.states import slurm_states, wait_for_suite
from kdbench.lifecycle import RunState
from kdbench.results.store import ResultStore
from kdbench.suite import RunSpec

if TYPE_CHECKING:
    from kdbench.executors.slurm.submission import SubmitSummary


class SlurmExecutor(Executor):
    """Job arrays on a SLURM cluster through submitit; ``submit`` returns once the jobs are queued."""

    name = "slurm"
    record_file = RECORD

    def check(self, options: RunOptions) -> None:
        self._profile(options)

    def _profile(self, options: RunOptions) -> Profile:
        """The cluster profile ``--profile`` names; there is no default (the shipped ``local`` one is the test
        cluster's: a real cluster's jobs would ask for the wrong partition and resources)."""
        if not options.profile:
            from kdbench.executors.profile import available_profiles, profile_search_paths

            searched = ", ".join(str(directory) for directory in profile_search_paths())
            raise ExecutorError(
                "--executor slurm needs --profile: a profile name or a YAML path. Available: "
                f"{', '.join(available_profiles()) or 'none'} (looked in {searched}; 'local' is the test cluster "
                "of slurm/local-cluster.sh; for yours copy kdbench/executors/slurm/profiles/example-gpu.yaml "
                "to slurm/<name>.yaml and edit it)"
            )
        try:
            return load_profile(options.profile, options.profile_settings)
        except ValueError as error:
            raise ExecutorError(str(error)) from None

    def submit(
        self, runs: Sequence[RunSpec], store: ResultStore, options: RunOptions, log: Log = print
    ) -> SubmitSummary:
        return _submission().submit_suite(
            runs,
            store,
            self._profile(options),
            retry_failed=options.retry_failed,
            device=options.device,
            data_root=options.data_root,
        )

    def states(self, store: ResultStore, runs: Sequence[RunSpec]) -> dict[str, RunState]:
        return slurm_states(store, runs)

    def cancel(self, store: ResultStore, runs: Sequence[RunSpec], log: Log = print) -> dict[str, str]:
        return _submission().cancel_runs(store, runs, log)

    def wait(
        self, store: ResultStore, runs: Sequence[RunSpec], log: Log = print, timeout_s: float | None = None
    ) -> dict[str, RunState]:
        return wait_for_suite(store, runs, timeout_s=timeout_s, log=log)


def _submission() -> ModuleType:
    """The submission module (it imports submitit); without submitit, an error that says what to install."""
    try:
        return importlib.import_module("kdbench.executors.slurm.submission")
    except ModuleNotFoundError as error:
        if error.name != "submitit" and "submitit" not in str(error):
            raise
        raise ExecutorError("the SLURM executor needs submitit: pip install 'submitit>=1.5'") from None


EXECUTOR = SlurmExecutor()
