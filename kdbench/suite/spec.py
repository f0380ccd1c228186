"""``RunSpec``: one training run, fully resolved; what the store, the executors and training share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from kdbench.suite.identity import run_id_of


@dataclass(frozen=True)
class RunSpec:
    """One training run. ``config()`` is what the run is (and its id); the rest describes its report cell."""

    kind: str  # "teacher" or "student"
    dataset: dict
    schedule: dict
    training: dict
    seed: int
    student: str
    teacher: str | None
    terms: tuple[tuple[str, dict], ...]
    ce_weight: float
    teacher_run: str | None = None
    teacher_checkpoint: str | None = None
    #: the SHA-256 of the teacher file's bytes: in the id in place of ``teacher_checkpoint``, its location
    teacher_sha256: str | None = None
    #: options of the run's models, by canonical name (``weights``, ``trainable`` of the torchvision backbones)
    models: dict = field(default_factory=dict)
    # descriptive only: not part of the id
    suite: str = ""
    method: str = ""
    sweep: dict = field(default_factory=dict)
    not_applicable: str | None = None
    #: the pair's teacher, also for runs that do not use it (Vanilla): the report's column
    pair_teacher: str | None = None
    #: the id older kdbench stored this run under (its teacher file by location), where that differs:
    #: the store finds a finished run there (``ResultStore.adopt_legacy_runs``)
    legacy_run_id: str | None = None

    def config(self) -> dict[str, Any]:
        """The resolved run config; its hash (``kdbench.suite.identity``) is the run id."""
        return {
            "kind": self.kind,
            "dataset": self.dataset,
            "schedule": self.schedule,
            "training": self.training,
            "seed": self.seed,
            "student": self.student,
            "teacher": self.teacher,
            "terms": [[name, params] for name, params in self.terms],
            "ce_weight": self.ce_weight,
            "teacher_run": self.teacher_run,
            "teacher_checkpoint": self.teacher_checkpoint,
            "teacher_sha256": self.teacher_sha256,
            "models": self.models,
        }

    @cached_property
    def run_id(self) -> str:
        return run_id_of(self.config())

    @property
    def pair(self) -> tuple[str | None, str]:
        return (self.pair_teacher or self.teacher, self.student)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["terms"] = [[name, params] for name, params in self.terms]
        data["run_id"] = self.run_id
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> RunSpec:
        fields = {k: v for k, v in data.items() if k != "run_id"}
        fields["terms"] = tuple((name, dict(params)) for name, params in data["terms"])
        return cls(**fields)
