"""What every executor offers the CLI: submit a suite's runs, say their states, cancel them, wait.

An executor is one module with one ``Executor`` subclass, named in ``kdbench.executors.EXECUTORS``.
``kdbench run`` / ``status`` / ``cancel`` talk to this interface only. Light: the CLI imports it
before it knows which executor (and so which heavy modules) a command needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from kdbench.errors import UserError
from kdbench.lifecycle import RunState

if TYPE_CHECKING:
    from kdbench.results.store import ResultStore
    from kdbench.suite import RunSpec

Log = Callable[[str], None]


class ExecutorError(UserError):
    """A user-facing problem of an executor (a bad option or profile, a cluster that refuses or does not
    answer): printed without a traceback, exit status 2."""


@dataclass(frozen=True)
class RunOptions:
    """What ``kdbench run`` asks of an executor; each executor refuses the options that are not its own."""

    device: str | None = None
    data_root: str | None = None
    retry_failed: bool = False
    progress: bool = True
    #: local: runs trained at once ("auto" or a positive integer)
    workers: str = "auto"
    #: slurm: the cluster profile (a name or a path) and key=value overrides of it
    profile: str | None = None
    profile_settings: tuple[str, ...] = ()


class Submission(Protocol):
    """What ``submit`` did, for the terminal."""

    #: every run has ended (a local executor trains before it returns): nothing to wait for
    finished: bool

    def describe(self) -> str:
        """A few lines for the terminal."""
        ...

    @property
    def exit_code(self) -> int:
        """0, or 1 when runs failed or are blocked."""
        ...


class Executor(ABC):
    """Where runs train. Subclasses set ``name`` and implement submit, states and cancel."""

    name: ClassVar[str]
    #: the file a run's directory gets when this executor takes the run (None: none), so that ``status``
    #: and ``cancel`` know whom to ask about a run; must match the executor's entry in ``EXECUTORS``
    record_file: ClassVar[str | None] = None

    def check(self, options: RunOptions) -> None:  # noqa: B027 (optional: most executors take every option)
        """Raise ExecutorError for options this executor does not take or understand (before any work)."""

    @abstractmethod
    def submit(self, runs: Sequence[RunSpec], store: ResultStore, options: RunOptions, log: Log = print) -> Submission:
        """Train (or have trained) every run of ``runs`` that is not done, teachers before their students."""

    @abstractmethod
    def states(self, store: ResultStore, runs: Sequence[RunSpec]) -> dict[str, RunState]:
        """The state of every distinct run of ``runs`` (NA runs included), students of failed teachers blocked."""

    @abstractmethod
    def cancel(self, store: ResultStore, runs: Sequence[RunSpec], log: Log = print) -> dict[str, str]:
        """Stop what this executor has queued or running for ``runs``; run id -> the job id cancelled."""

    def wait(
        self, store: ResultStore, runs: Sequence[RunSpec], log: Log = print, timeout_s: float | None = None
    ) -> dict[str, RunState]:
        """Wait until no run of ``runs`` is queued or running (or ``timeout_s`` passes); the last states.

        The default: nothing of this executor's outlives ``submit``."""
        return self.states(store, runs)
