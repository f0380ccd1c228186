"""Checkpoints in the CRD code's format: published teachers load into our models with identical logits.

The CRD code saves ``{'model': state_dict, 'epoch': ..., 'accuracy': ..., 'optimizer': ...}`` as
``<name>_vanilla/ckpt_epoch_240.pth``; mdistiller re-distributes the same files. Our module names
differ from the CRD code's (our ``stem.0`` is its ``conv1``), so each family declares its key
mapping next to its definition (``crd_key_rules``, see ``kdbench.models.keys``): prefix rules turning
our keys into the CRD code's; their inverse loads. A family with ``crd_key_rules = None`` has no CRD
counterpart: its files have the same layout with our own key names.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdbench.errors import first_line
from kdbench.suite.teacher_files import file_sha256

#: shown at most this many keys per list in an error message
_SHOWN_KEYS = 5


def crd_key_map(model: nn.Module) -> dict[str, str]:
    """Every key of ``model.state_dict()`` -> the CRD code's name for the same tensor (itself without one)."""
    if "crd_key_rules" not in vars(type(model)):
        # declared by each family on its own class, so a new family cannot forget it silently
        raise TypeError(f"{type(model).__name__} declares no crd_key_rules (a tuple of rules, or None)")
    rules = type(model).crd_key_rules
    if rules is None:
        return {key: key for key in model.state_dict()}
    mapping: dict[str, str] = {}
    for key in model.state_dict():
        for pattern, replacement in rules:
            renamed, count = re.subn("^" + pattern, replacement, key, count=1)
            if count:
                mapping[key] = renamed
                break
        else:
            raise ValueError(f"{type(model).__name__}: no CRD key rule matches '{key}'")
    if len(set(mapping.values())) != len(mapping):
        raise ValueError(f"{type(model).__name__}: the CRD key rules map two keys to one name")
    return mapping


def to_crd_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict under the CRD code's key names (tensors detached, on the CPU)."""
    mapping = crd_key_map(model)
    return {mapping[key]: value.detach().cpu() for key, value in model.state_dict().items()}


def _listed(keys: list[str], separator: str = ", ") -> str:
    shown = separator.join(keys[:_SHOWN_KEYS])
    return f"{shown}, ... ({len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else shown


def from_crd_state_dict(
    model: nn.Module, crd_state: Mapping[str, torch.Tensor], source: str = "state dict"
) -> dict[str, torch.Tensor]:
    """``crd_state`` (CRD key names) renamed to ``model``'s keys, after checking it fits exactly.

    Raises ``ValueError`` naming ``source``, the missing and unexpected keys and the shape
    mismatches, so a wrong file never loads partially. A missing ``num_batches_tracked`` (files from
    torch < 0.4.1) is taken from ``model``: it does not change the outputs.
    """
    ours = model.state_dict()
    ours_to_crd = crd_key_map(model)
    crd_to_ours = {crd: key for key, crd in ours_to_crd.items()}
    missing = [
        crd for crd, key in crd_to_ours.items() if crd not in crd_state and not key.endswith("num_batches_tracked")
    ]
    unexpected = [crd for crd in crd_state if crd not in crd_to_ours]
    mismatched = [
        (crd, tuple(crd_state[crd].shape), tuple(ours[key].shape))
        for crd, key in crd_to_ours.items()
        if crd in crd_state and tuple(crd_state[crd].shape) != tuple(ours[key].shape)
    ]
    if missing or unexpected or mismatched:
        # the head's weight: the CRD families call it classifier.weight, other families name their own
        head = "classifier.weight" if "classifier.weight" in ours else [k for k in ours if k.endswith("weight")][-1]
        described = f"{type(model).__name__} with {ours[head].shape[0]} classes"
        lines = [f"{source} does not fit the model ({described}), so nothing was loaded:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_listed(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_listed(unexpected)}")
        if mismatched:
            shapes = [
                f"{crd} is {list(found)} in the file, {list(wanted)} in the model" for crd, found, wanted in mismatched
            ]
            lines.append(f"  shape mismatches ({len(mismatched)}): {_listed(shapes, '; ')}")
        classifier = ours_to_crd[head]
        if not missing and not unexpected and classifier in crd_state:
            found, wanted = crd_state[classifier].shape[0], ours[head].shape[0]
            if found != wanted:
                lines.append(f"  the file has {found} classes, the model {wanted}")
        raise ValueError("\n".join(lines))
    return {key: crd_state[crd] if crd in crd_state else ours[key] for crd, key in crd_to_ours.items()}


def _read(path: Path) -> Any:
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise ValueError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes), not a checkpoint (a copy that did not finish?)")
    with open(path, "rb") as file:
        head = file.read(2)
    if head != b"PK" and not head.startswith(b"\x80"):  # torch.save writes a zip archive; older ones a pickle
        raise ValueError(f"{path}: not a PyTorch checkpoint file (neither torch.save's zip archive nor a pickle)")
    try:
        # the CRD code's final *_last.pth also pickles its argparse options
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several kinds for a file that is not a safe checkpoint
        reason = first_line(error)  # torch's first line says it
        raise ValueError(
            f"{path}: cannot be read as a PyTorch checkpoint (only tensors, plain values and argparse options "
            f"are unpickled, for safety): {reason}"
        ) from None


def _is_state_dict(value: object) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def load_crd_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a CRD-format file (``{'model': state_dict, ...}``, or a bare state dict) into ``model``.

    Returns the file's other entries (``epoch``, ``accuracy`` or ``best_acc``, ...) without the
    optimizer state. Raises ``ValueError`` naming the file when it does not fit ``model`` exactly.
    """
    path = Path(path)
    payload = _read(path)
    if isinstance(payload, Mapping) and _is_state_dict(payload.get("model")):
        state, extras = payload["model"], {k: v for k, v in payload.items() if k not in {"model", "optimizer"}}
    elif _is_state_dict(payload):
        state, extras = payload, {}
    else:
        found = sorted(payload) if isinstance(payload, Mapping) else type(payload).__name__
        raise ValueError(
            f"{path}: not a CRD checkpoint; expected a dict whose 'model' entry is a state dict, "
            f"or a bare state dict, found {found}"
        )
    # a model saved from inside nn.DataParallel prefixes every key
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    model.load_state_dict(from_crd_state_dict(model, state, source=str(path)))
    return extras


def save_crd_checkpoint(model: nn.Module, path: str | os.PathLike[str], **extras: Any) -> Path:
    """Write ``{'model': <CRD-keyed state dict>, **extras}`` atomically, loadable by the CRD code."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save({"model": to_crd_state_dict(model), **extras}, temporary)
    os.replace(temporary, path)
    return path


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (the result records which teacher file was used; its students' ids
    hold the same hash: ``kdbench.suite.teacher_files``)."""
    return file_sha256(path)
