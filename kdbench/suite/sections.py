"""Resolvers of a run's settings: schedule (with the recipe keys), training, data set, seeds, model
options; each checks its section into a typed value of ``kdbench.suite.schema``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kdbench.registry import UnknownNameError, unknown_name_message
from kdbench.suite.schema import (
    COMPILE_MODES,
    DATASET_COMMON_KEYS,
    DEFAULT_SCHEDULE,
    PRECISIONS,
    SCHEDULE_KEYS,
    SCHEDULE_PRESETS,
    TRAINING_DEFAULTS,
    DatasetConfig,
    Schedule,
    Training,
)
from kdbench.validation import Collector, describe, join


def resolve_schedule(schedule: Any, c: Collector, path: str, shortened: bool = False) -> Schedule:
    """A schedule from a preset name or a mapping (preset + overrides).

    ``shortened``: the epochs were cut on the command line for a quick try (``schedule.epochs=2``), so
    milestones beyond the last epoch are expected there, not a mistake in the file.
    """
    if schedule is None:
        schedule = {}
    if isinstance(schedule, str):
        schedule = {"preset": schedule}
    if not isinstance(schedule, Mapping):
        c.add(path, f"expected a preset name ({', '.join(SCHEDULE_PRESETS)}) or a mapping, got {describe(schedule)}")
        schedule = {}
    c.unknown_keys(path, schedule, sorted(SCHEDULE_KEYS))
    preset = schedule.get("preset", DEFAULT_SCHEDULE)
    if preset not in SCHEDULE_PRESETS:
        c.add(join(path, "preset"), unknown_name_message("schedule preset", preset, SCHEDULE_PRESETS))
        preset = DEFAULT_SCHEDULE
    fallback = SCHEDULE_PRESETS[preset]
    resolved = {**fallback, **{k: v for k, v in schedule.items() if k in SCHEDULE_KEYS and k != "preset"}}
    for key in ("epochs", "batch_size"):
        value = resolved[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            c.add(join(path, key), f"expected a positive integer, got {describe(value)}")
            resolved[key] = fallback[key]
    # (lower bound, inclusive?, upper bound) of each number: lr 0 would never train, momentum 1 never forgets
    ranges = {
        "lr": (0.0, False, None),
        "lr_decay": (0.0, False, None),
        "momentum": (0.0, True, 1.0),
        "weight_decay": (0.0, True, None),
    }
    for key, (low, inclusive, high) in ranges.items():
        checked = c.number(
            join(path, key),
            resolved[key],
            minimum=low if inclusive else None,
            above=None if inclusive else low,
            below=high,
        )
        resolved[key] = float(fallback[key] if checked is None else checked)
    if not isinstance(resolved["nesterov"], bool):
        c.add(join(path, "nesterov"), f"expected true or false, got {describe(resolved['nesterov'])}")
        resolved["nesterov"] = False
    elif resolved["nesterov"] and resolved["momentum"] == 0:
        c.add(
            join(path, "nesterov"),
            "nesterov: true needs momentum > 0 (torch refuses it); set a momentum or nesterov: false",
        )
    milestones = resolved["milestones"]
    if not isinstance(milestones, list) or not all(isinstance(m, int) and not isinstance(m, bool) for m in milestones):
        c.add(join(path, "milestones"), f"expected a list of epoch numbers, got {describe(milestones)}")
        milestones = fallback["milestones"]
    elif any(m < 1 for m in milestones):
        c.add(join(path, "milestones"), f"epochs are counted from 1; got {milestones}")
    elif any(a >= b for a, b in zip(milestones, milestones[1:], strict=False)):
        c.add(join(path, "milestones"), f"must be strictly increasing, got {milestones}")
    elif milestones and milestones[-1] > resolved["epochs"] and not shortened:
        c.add(
            join(path, "milestones"),
            f"{milestones[-1]} is beyond the last epoch ({resolved['epochs']}): that lr step would never happen",
        )
    resolved["milestones"] = tuple(milestones)
    _resolve_recipe(resolved, c, path)
    return Schedule(**resolved)


def _resolve_recipe(resolved: dict[str, Any], c: Collector, path: str) -> None:
    """The recipe keys (kdbench.recipe) checked and typed in place; defaults where the suite sets none."""
    from kdbench.recipe import SCHEDULE_DEFAULTS, resolve_selection, schedule_problems, selection_problems

    for key, default in SCHEDULE_DEFAULTS.items():
        resolved.setdefault(key, default)
    for key in ("validation", "selection", "early_stopping"):
        resolved.setdefault(key, None)
    problems = schedule_problems(resolved)
    problems += selection_problems(resolved["validation"], resolved["selection"], resolved["early_stopping"])
    for key, message in problems:
        c.add(join(path, key), message)
    bad = {key.split(".")[0] for key, _ in problems}
    for key in bad & set(SCHEDULE_DEFAULTS):
        resolved[key] = SCHEDULE_DEFAULTS[key]
    resolved["betas"] = tuple(float(b) for b in resolved["betas"])
    resolved["eps"] = float(resolved["eps"])
    if bad & {"validation", "selection", "early_stopping"}:
        resolved["validation"] = resolved["selection"] = resolved["early_stopping"] = None
        return
    validation = resolved["validation"]
    if validation is not None:
        resolved["validation"] = (("fraction", float(validation["fraction"])), ("seed", int(validation.get("seed", 0))))
    selection = resolve_selection(resolved["selection"], resolved["early_stopping"])
    if selection is not None:
        resolved["selection"] = (("metric", selection.metric), ("mode", selection.mode))
    if resolved["early_stopping"] is not None:
        resolved["early_stopping"] = (("patience", int(resolved["early_stopping"]["patience"])),)


def resolve_training(training: Any, c: Collector) -> Training:
    if training is None:
        training = {}
    if not isinstance(training, Mapping):
        c.add("training", f"expected a mapping, got {describe(training)}")
        return Training()
    c.unknown_keys("training", training, sorted(TRAINING_DEFAULTS))
    resolved = {**TRAINING_DEFAULTS, **{k: v for k, v in training.items() if k in TRAINING_DEFAULTS}}
    if resolved["precision"] not in PRECISIONS:
        c.add("training.precision", unknown_name_message("precision", resolved["precision"], PRECISIONS))
    if resolved["compile"] is False:  # YAML reads an unquoted `off` as false
        resolved["compile"] = "off"
    if resolved["compile"] not in COMPILE_MODES:
        c.add("training.compile", unknown_name_message("compile mode", resolved["compile"], COMPILE_MODES))
    elif resolved["compile"] != "off" and resolved["deterministic"] is True:
        # cuDNN can be made deterministic; the kernels torch.compile generates (and max-autotune's timed
        # choice of them) cannot be promised to be
        c.add(
            "training.compile",
            f"'{resolved['compile']}' cannot be combined with training.deterministic: true; "
            "set compile: off for bit-reproducible runs, or deterministic: false",
        )
    for key in ("channels_last", "deterministic"):
        if not isinstance(resolved[key], bool):
            c.add(f"training.{key}", f"expected true or false, got {describe(resolved[key])}")
    return Training(**resolved)


def resolve_dataset(dataset: Any, c: Collector) -> DatasetConfig | None:
    from kdbench.data import DATASETS, dataset_parameters
    from kdbench.data.loaders import LOADERS

    if dataset is None:
        c.add("dataset", f"missing; choose one of: {', '.join(DATASETS.names())}")
        return None
    if isinstance(dataset, str):
        dataset = {"name": dataset}
    if not isinstance(dataset, Mapping) or "name" not in dataset:
        c.add("dataset", f"expected a data set name or a mapping with 'name', got {describe(dataset)}")
        return None
    try:
        name = DATASETS.canonical(dataset["name"])
    except UnknownNameError as error:
        c.add("dataset.name", str(error))
        return None
    params = dataset_parameters(name)
    c.unknown_keys("dataset", dataset, sorted({*DATASET_COMMON_KEYS, *params}))
    loader = dataset.get("loader", "auto")
    kinds = ["auto", *LOADERS.names()]
    if loader not in kinds:
        c.add("dataset.loader", unknown_name_message("loader", loader, kinds))
    if dataset.get("root") is not None and not isinstance(dataset["root"], str):
        c.add("dataset.root", f"expected a path, got {describe(dataset['root'])}")
    for key in ("root", "cache_dir", "folder"):  # where the data lives: a path the system can take
        c.check_path(f"dataset.{key}", dataset.get(key))
    if "download" in dataset and not isinstance(dataset["download"], bool):
        c.add("dataset.download", f"expected true or false, got {describe(dataset['download'])}")
    for key, default in params.items():
        if key in dataset and key not in DATASET_COMMON_KEYS:
            c.check_type(f"dataset.{key}", dataset[key], default)
    if dataset.get("groups") is not None:
        from kdbench.data import dataset_shape
        from kdbench.data.grouping import grouping_problems

        classes = dataset_shape({**dataset, "name": name, "groups": None}).num_classes
        for problem in grouping_problems(dataset["groups"], classes):
            c.add("dataset.groups", problem)
    resolved = dict(params)
    resolved.update({k: v for k, v in dataset.items() if k != "name"})
    resolved["name"] = name
    resolved.setdefault("loader", "auto")
    resolved.setdefault("root", None)
    resolved.setdefault("download", False)
    return DatasetConfig(name, tuple(sorted(resolved.items())))


def resolve_seeds(seeds: Any, c: Collector) -> tuple[int, ...]:
    if seeds is None:
        return (0,)
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        c.add("seeds", f"expected a non-empty list of integers, got {describe(seeds)}")
        return (0,)
    if len(set(seeds)) != len(seeds):
        c.add("seeds", f"seeds repeat: {seeds}")
    return tuple(seeds)


def model_name(c: Collector, path: str, name: Any) -> str | None:
    """The canonical model name, or a problem naming the nearest registered ones."""
    from kdbench.models import MODELS

    if not isinstance(name, str):
        c.add(path, f"expected a model name, got {describe(name)}")
        return None
    try:
        return MODELS.canonical(name)
    except UnknownNameError as error:
        c.add(path, str(error))
        return None


def _is_default(default: Any, value: Any) -> bool:
    import inspect

    return (
        default is not inspect.Parameter.empty
        and value == default
        and isinstance(value, bool) == isinstance(default, bool)
    )


def resolve_models(models: Any, c: Collector) -> dict[str, dict]:
    """``models: {name: {option: value}}``: a family's own parameters (the torchvision backbones'
    ``weights`` and ``trainable``), checked against the family's signature."""
    import inspect

    from kdbench.models import MODELS

    if models is None:
        return {}
    if not isinstance(models, Mapping):
        c.add("models", f"expected a mapping of model name to options, got {describe(models)}")
        return {}
    resolved = {}
    for name, options in models.items():
        canonical = model_name(c, f"models.{name}", name)
        if canonical is None:
            continue
        parameters = inspect.signature(MODELS.get(canonical)).parameters
        valid = [key for key in parameters if key not in ("num_classes", "image_shape")]
        if not isinstance(options, Mapping):
            choices = ", ".join(valid) or "none"
            c.add(f"models.{name}", f"expected a mapping of options ({choices}), got {describe(options)}")
            continue
        if not valid and options:
            c.add(f"models.{name}", f"{canonical} takes no options")
            continue
        c.unknown_keys(f"models.{name}", options, valid)
        c.check_path(f"models.{name}.weights", options.get("weights"))
        # an option at the family's own default is no option: the run (and its id) is the plain model's
        given = {
            key: value
            for key, value in options.items()
            if key in valid and not _is_default(parameters[key].default, value)
        }
        if given:
            resolved[canonical] = given
    return resolved
