"""Cluster profiles: the SLURM settings of one cluster, as a small YAML file.

``--profile NAME`` finds ``slurm/NAME.yaml`` in the current directory, else one of the profiles that
ship inside the package (``kdbench/executors/slurm/profiles/``: ``local``, ``example-gpu``; found
through ``importlib.resources``, so they work from a wheel); ``--profile PATH`` reads that file.
``key=value`` overrides (values are YAML) apply on top, e.g. ``time_min=240`` or
``sbatch.mail-type=END``. Every problem is reported at once, naming the file, the key, the bad value
and the valid choices nearest first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kdbench.registry import nearest_first
from kdbench.suite.loading import read_yaml_file
from kdbench.validation import Collector, Problem, ValidationError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PROFILE_DIRECTORY = "slurm"


@dataclass(frozen=True)
class Profile:
    """What every job of a suite asks the cluster for. One job (array task) trains ``runs_per_job`` runs.

    ``cpus_per_run`` and ``mem_gb`` are per run: a job that trains a pack of N runs asks for N times
    each (N is ``runs_per_job``, or fewer where an array has fewer runs). ``gpus_per_run`` is per job:
    the runs of a pack share its GPU(s), one process each. Packing pays where one run leaves a GPU
    mostly idle (small CIFAR models on a big GPU); the job ends when its slowest run does, and fails if
    any of its runs failed (see ``kdbench.executors.slurm``).
    """

    source: str = "<defaults>"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    #: GPUs of one job, shared by the runs of its pack
    gpus_per_run: int = 0
    #: CPUs per run (a job training N runs asks for N times this); each run uses this many torch threads
    cpus_per_run: int = 1
    #: memory per run (a job training N runs asks for N times this); None: the partition's default
    mem_gb: float | None = None
    time_min: int = 60
    #: seconds before the time limit at which the job checkpoints and requeues itself
    signal_delay_s: int = 120
    #: how many times a run may hit its time limit and requeue before it counts as failed
    max_timeouts: int = 20
    array_parallelism: int = 256
    #: runs trained at once in one job, one process each (1: a job per run)
    runs_per_job: int = 1
    job_name: str = "kdbench"
    #: any other sbatch option, without the leading dashes: {mail-type: END, exclude: node7}
    sbatch: dict = field(default_factory=dict)
    #: shell lines run before the job starts (module load, venv activation)
    setup: tuple[str, ...] = ()


_KEYS = [f.name for f in fields(Profile) if f.name != "source"]
_OPTIONAL_TEXT = {"partition", "account", "qos", "constraint"}
_POSITIVE_INTEGERS = {"cpus_per_run", "time_min", "max_timeouts", "array_parallelism", "runs_per_job"}
_NON_NEGATIVE_INTEGERS = {"gpus_per_run", "signal_delay_s"}


def profile_search_paths() -> list[Traversable]:
    """Where profile names are looked up: ``slurm/`` of the current directory, then the shipped profiles."""
    # files() of the light parent package: importing kdbench.executors.slurm would import submitit
    return [Path.cwd() / PROFILE_DIRECTORY, files("kdbench.executors") / "slurm" / "profiles"]


def available_profiles() -> list[str]:
    """Profile names found on the search paths."""
    names = set()
    for directory in profile_search_paths():
        if directory.is_dir():
            names.update(entry.name.rsplit(".", 1)[0] for entry in directory.iterdir() if _is_profile(entry))
    return sorted(names)


def _is_profile(entry: Traversable) -> bool:
    return entry.is_file() and entry.name.endswith((".yaml", ".yml"))


def find_profile(name_or_path: str | Path) -> Path | Traversable:
    """A profile file from a path, or from a name looked up in ``profile_search_paths``."""
    candidate = Path(name_or_path).expanduser()
    looks_like_path = candidate.suffix in {".yaml", ".yml"} or len(candidate.parts) > 1
    if candidate.is_file():
        return candidate
    if looks_like_path:
        raise ValueError(f"Profile file '{name_or_path}' does not exist. Profiles by name: {_choices(candidate.stem)}")
    for directory in profile_search_paths():
        for suffix in (".yaml", ".yml"):
            path = directory / f"{name_or_path}{suffix}"
            if path.is_file():
                return path
    searched = ", ".join(str(directory) for directory in profile_search_paths())
    raise ValueError(
        f"Unknown SLURM profile '{name_or_path}' (looked in {searched}). Available: {_choices(str(name_or_path))}"
    )


def _choices(name: str) -> str:
    return ", ".join(nearest_first(name, available_profiles())) or "none"


def parse_profile_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["time_min=30", "sbatch.mail-type=END"]`` -> ``{"time_min": 30, "sbatch": {"mail-type": "END"}}``."""
    document: dict[str, Any] = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"Profile override '{item}' must look like key=value, e.g. time_min=240")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            raise ValueError(f"Profile override '{item}': value {raw!r} is not valid YAML ({error})") from None
        head, dot, rest = key.partition(".")
        if dot:
            if head != "sbatch":
                raise ValueError(f"Profile override '{item}': only sbatch.<option> takes a dotted key")
            document.setdefault("sbatch", {})[rest] = value
        else:
            document[key] = value
    return document


def load_profile(name_or_path: str | Path | None, overrides: Sequence[str] | Mapping[str, Any] = ()) -> Profile:
    """Read, merge overrides into, and validate a profile; None gives the defaults (plus overrides)."""
    if name_or_path is None:
        source, document = "<defaults>", {}
    else:
        path = find_profile(name_or_path)
        source = str(path)
        # the suites' bounded, strict reader (UTF-8, no repeated keys, every float spelling)
        document = read_yaml_file(path) or {}
        if not isinstance(document, dict):
            raise ValidationError(
                source, [Problem("", f"a profile is a mapping of settings, got {type(document).__name__}")]
            )
    update = parse_profile_overrides(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
    merged = dict(document)
    for key, value in update.items():
        if key == "sbatch" and isinstance(value, Mapping) and isinstance(merged.get("sbatch"), Mapping):
            merged["sbatch"] = {**merged["sbatch"], **value}
        else:
            merged[key] = value
    return Profile(source=source, **_validated(merged, source, from_command_line=set(update)))


def _validated(document: Mapping[str, Any], source: str, from_command_line: set[str]) -> dict[str, Any]:
    """Every problem of the profile at once, through the one validation mechanism (``ValidationError``)."""
    c = Collector()
    values: dict[str, Any] = {}
    for key, value in document.items():
        origin = " (from the command line)" if key in from_command_line else ""
        if key not in _KEYS:
            valid = ", ".join(nearest_first(str(key), _KEYS))
            c.add(str(key), f"unknown key '{key}'{origin} (value {value!r}). Valid keys, nearest first: {valid}")
            continue
        problem = _check(key, value)
        if problem:
            c.add(key, f"{problem}{origin}")
        else:
            values[key] = _normalised(key, value)
    c.raise_if_any(f"{source} (SLURM profile)")
    return values


def _check(key: str, value: Any) -> str | None:
    if key in _OPTIONAL_TEXT or key == "job_name":
        if value is None and key != "job_name":
            return None
        return None if isinstance(value, str) and value.strip() else f"value {value!r} must be a non-empty string"
    if key in _POSITIVE_INTEGERS or key in _NON_NEGATIVE_INTEGERS:
        lowest = 1 if key in _POSITIVE_INTEGERS else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            return f"value {value!r} must be an integer >= {lowest}"
        return None
    if key == "mem_gb":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            return f"value {value!r} must be a positive number of GB (or null for the partition's default)"
        return None
    if key == "sbatch":
        if value is None:
            return None
        if not isinstance(value, Mapping) or not all(isinstance(option, str) for option in value):
            return f"value {value!r} must be a mapping of sbatch option names (no dashes) to values"
        reserved = sorted(set(value) & _RESERVED_SBATCH)
        if reserved:
            return f"option(s) {', '.join(reserved)} are set by kdbench itself; use the profile keys instead"
        return None
    if key == "setup":
        if value is None:
            return None
        lines = [value] if isinstance(value, str) else value
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            return f"value {value!r} must be a list of shell lines"
        return None
    return None


#: sbatch options the executor sets from other keys or needs for itself
_RESERVED_SBATCH = {"array", "dependency", "output", "error", "signal", "open-mode", "job-name", "time"}


def _normalised(key: str, value: Any) -> Any:
    if key == "sbatch":
        return dict(value or {})
    if key == "setup":
        return tuple([value] if isinstance(value, str) else (value or ()))
    if key == "mem_gb" and value is not None:
        return float(value)
    return value
