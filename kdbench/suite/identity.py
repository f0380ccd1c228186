"""A run's identity: the resolved run config, hashed whole, minus one declared list of exceptions.

Stored results are found by run id, so an id is a promise: no change to kdbench may alter the id
of a run that exists. Three things are left out of the hash, and only these:
- where the data lives (``DATA_LOCATION_KEYS`` of the dataset config): moving the data to another
  disk must not retrain anything;
- where a teacher file lies, once its content is known (``teacher_sha256``, the SHA-256 of its bytes,
  is hashed instead): moving the file to another mount must not retrain its students. A run whose
  teacher file's content is not known keeps the location in its id, as kdbench did before;
- keys added after runs were first stored, while they hold the value they had when they were
  introduced (``LATER_DEFAULTS``): runs trained before the key existed keep their ids. A key that
  differs from that default enters the id, so a changed setting always makes a new run.
Adding a key to the schedule, the training settings, a data set or a method means adding it here
in the same change; ``tests/suite/test_run_ids.py`` pins the ids of every suite and fails otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LaterDefault:
    """``path`` (dotted, into the run config; ``terms.<method>.<parameter>`` for a method's parameter,
    ``*`` for every method) is left out of the id while it equals ``default``; added in ``since``."""

    path: str
    default: Any
    since: str


#: dataset keys that say where the data lives, not what it is
DATA_LOCATION_KEYS = frozenset({"root", "download", "cache_dir"})

#: every key added after the first stored runs, with the value it had before it existed
LATER_DEFAULTS: tuple[LaterDefault, ...] = (
    LaterDefault("training.compile", "off", since="0.1.0"),
    LaterDefault("terms.*.warmup_epochs", 0, since="0.2.0"),
    LaterDefault("terms.kd.logit_standardize", False, since="0.2.0"),
    # kdbench.recipe: optimizer, lr schedule and warm-up, validation-based model selection (issue 14)
    LaterDefault("schedule.optimizer", "sgd", since="0.2.0"),
    LaterDefault("schedule.lr_schedule", "multistep", since="0.2.0"),
    LaterDefault("schedule.warmup_epochs", 0, since="0.2.0"),
    LaterDefault("schedule.betas", [0.9, 0.999], since="0.2.0"),
    LaterDefault("schedule.eps", 1e-8, since="0.2.0"),
    LaterDefault("schedule.validation", None, since="0.2.0"),
    LaterDefault("schedule.selection", None, since="0.2.0"),
    LaterDefault("schedule.early_stopping", None, since="0.2.0"),
    LaterDefault("models", {}, since="0.2.0"),
    # the TAKD code's KL reduction, for comparison (issue 15)
    LaterDefault("terms.kd.reduction", "batchmean", since="0.2.0"),
    # a teacher file by its content (kdbench.suite.teacher_files); runs stored before it are found under
    # their location-based id (RunSpec.legacy_run_id)
    LaterDefault("teacher_sha256", None, since="0.2.0"),
)


def _leave_out(section: dict, key: str, default: Any) -> None:
    # True == 1 in Python: a boolean default only matches a boolean
    if key in section and section[key] == default and isinstance(section[key], bool) == isinstance(default, bool):
        del section[key]


def identity_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (a run's resolved config) as it is hashed: the exceptions above removed."""
    hashed = json.loads(json.dumps(config, default=str))  # a deep copy in the hashed form
    if isinstance(hashed.get("dataset"), dict):
        hashed["dataset"] = {k: v for k, v in hashed["dataset"].items() if k not in DATA_LOCATION_KEYS}
    if hashed.get("teacher_sha256"):  # the teacher file by what it holds, not where it lies
        hashed.pop("teacher_checkpoint", None)
    for later in LATER_DEFAULTS:
        section, _, key = later.path.rpartition(".")
        if section.startswith("terms."):
            method = section.removeprefix("terms.")
            for name, params in hashed.get("terms") or []:
                if method in ("*", name) and isinstance(params, dict):
                    _leave_out(params, key, later.default)
            continue
        node: Any = hashed
        for part in section.split(".") if section else []:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            _leave_out(node, key, later.default)
    return hashed


def location_run_id_of(config: Mapping[str, Any]) -> str:
    """The id older kdbench gave ``config``: its teacher file by location (``teacher_sha256`` unknown)."""
    return run_id_of({**config, "teacher_sha256": None})


def run_id_of(config: Mapping[str, Any]) -> str:
    """12 hex digits of the SHA-256 of the canonical JSON of ``identity_config(config)``."""
    canonical = json.dumps(identity_config(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
