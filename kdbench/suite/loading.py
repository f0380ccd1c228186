"""Reading suites: YAML (bounded and strict), includes, ``key=value`` overrides, sweeps.

The YAML reader is hardened for files a user did not write: text must be UTF-8, a mapping may not
repeat a key (YAML would keep the last one silently), the document may not nest deeper than
``MAX_DEPTH`` or expand (aliases counted at every use) to more than ``MAX_NODES`` values, so an alias
bomb is refused before it is built. Floats are read in every spelling (``1e-3``, ``5e-4``, ``1E6``),
not only YAML 1.1's (which reads ``1e-3`` as a string).
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from kdbench.validation import Collector, Problem, ValidationError, describe, join

#: a suite, with its includes, expands to at most this many YAML values ...
MAX_NODES = 200_000
#: ... nested at most this deep
MAX_DEPTH = 64
MAX_FILE_BYTES = 4 << 20

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$""",
    re.X,
)


class SuiteLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads every float spelling and refuses repeated keys."""


SuiteLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int, mapping: yaml.MappingNode | None = None):
        super().__init__(f"key '{key}' appears twice in one mapping (line {line}); YAML would keep only the last")
        self.key, self.line, self.mapping = key, line, mapping


def _path_to(root: yaml.Node, target: yaml.Node) -> str | None:
    """The dotted key path (``methods.KD``, ``pairs[1]``) from ``root`` to the node ``target``, or None."""
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if id(node) in seen:  # an alias: its first place is its path
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                stack.append((value, f"{path}.{name}" if path else str(name)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((value, f"{path}[{i}]") for i, value in enumerate(node.value))
    return None


def _construct_mapping(loader: SuiteLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise DuplicateKey(key, key_node.start_mark.line + 1, node)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


SuiteLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _expanded_size(root: yaml.Node) -> tuple[int, int]:
    """(values, depth) of the document once every alias is expanded, counted without expanding it."""
    sizes: dict[int, tuple[int, int]] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if children_done or not children:
            size = 1 + sum(sizes[id(c)][0] for c in children)
            depth = 1 + max((sizes[id(c)][1] for c in children), default=0)
            sizes[id(node)] = (min(size, MAX_NODES + 1), depth)
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
        if len(stack) > 4 * MAX_NODES:
            return MAX_NODES + 1, 0
    return sizes[id(root)]


def parse_yaml(text: str, source: str) -> Any:
    """One YAML document, bounded and strict (see the module docstring); problems as ``ValidationError``."""
    try:
        node = yaml.compose(text, Loader=SuiteLoader)
    except RecursionError:
        raise ValidationError(source, [Problem("", f"nested too deeply (more than {MAX_DEPTH} levels)")]) from None
    except yaml.YAMLError as error:
        raise ValidationError(source, [Problem("", f"not valid YAML: {error}")]) from None
    if node is None:
        return None
    values, depth = _expanded_size(node)
    if values > MAX_NODES:
        raise ValidationError(
            source,
            [
                Problem(
                    "", f"expands to more than {MAX_NODES:,} values (aliases counted at every use); a suite is smaller"
                )
            ],
        )
    if depth > MAX_DEPTH:
        raise ValidationError(source, [Problem("", f"nested {depth} levels deep; at most {MAX_DEPTH} are allowed")])
    loader = SuiteLoader(text)
    try:
        return loader.construct_document(node)
    except DuplicateKey as error:
        where = _path_to(node, error.mapping) if error.mapping is not None else None
        key = f"{where}.{error.key}" if where else str(error.key)
        raise ValidationError(source, [Problem(key, str(error))]) from None
    except yaml.constructor.ConstructorError as error:
        if "merge" in str(error):  # a YAML 1.1 feature the safe reader does not take; includes do the job
            message = "YAML merge keys (<<: *anchor) are not supported; share settings with include: instead"
            raise ValidationError(source, [Problem("", message)]) from None
        raise ValidationError(source, [Problem("", f"not valid YAML: {error}")]) from None
    except yaml.YAMLError as error:
        raise ValidationError(source, [Problem("", f"not valid YAML: {error}")]) from None
    finally:
        loader.dispose()


def read_yaml_file(path: Path, source: str | None = None) -> Any:
    """A YAML file's document; a missing, unreadable, oversized or non-UTF-8 file is a clean error."""
    source = source or str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValidationError(source, [Problem("", f"{path} is over {MAX_FILE_BYTES >> 20} MiB; not a suite")])
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValidationError(source, [Problem("", f"no such file: {path}")]) from None
    except IsADirectoryError:
        raise ValidationError(source, [Problem("", f"{path} is a folder, not a YAML file")]) from None
    except OSError as error:
        raise ValidationError(source, [Problem("", f"cannot read {path}: {error.strerror or error}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValidationError(
            source, [Problem("", f"not UTF-8 text (byte {error.start}: {data[error.start : error.start + 1]!r})")]
        ) from None
    return parse_yaml(text, str(path))


def parse_overrides(pairs: Sequence[str]) -> list[tuple[str, Any]]:
    """``["schedule.epochs=2", "seeds=[0]"]`` -> ``[("schedule.epochs", 2), ("seeds", [0])]`` (values are YAML)."""
    parsed = []
    for item in pairs:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValidationError(
                "command line", [Problem(item, "an override must look like key.path=value, e.g. schedule.epochs=2")]
            )
        try:
            value = parse_yaml(raw, f"command line ({key.strip()}=...)") if raw.strip() else None
        except ValidationError as error:
            raise ValidationError("command line", [Problem(key.strip(), p.message) for p in error.problems]) from None
        parsed.append((key.strip(), value))
    return parsed


def set_path(document: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = document
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


def deep_merge(base: dict, update: Mapping) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_suite_file(path: Path) -> dict:
    document = read_yaml_file(path)
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ValidationError(str(path), [Problem("", f"a suite must be a mapping of keys, got {describe(document)}")])
    return document


def resolve_includes(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The suite at ``path`` merged over the files it includes (paths relative to it); this file wins."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ValidationError(str(path), [Problem("include", f"includes itself: {chain}")])
    document = _read_suite_file(path)
    includes = document.pop("include", None)
    if includes is None:
        return document
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ValidationError(
            str(path), [Problem("include", f"expected a path or a list of paths, got {describe(includes)}")]
        )
    merged: dict = {}
    for include in includes:
        merged = deep_merge(merged, resolve_includes(path.parent / include, (*seen, path)))
    return deep_merge(merged, document)


def expand_sweeps(document: dict, sweepable: Sequence[str], c: Collector) -> list[tuple[dict, dict]]:
    """(swept values, the document with them applied) for every point of the ``sweeps`` grid."""
    sweeps = document.get("sweeps") or {}
    base = {k: v for k, v in document.items() if k != "sweeps"}
    if not isinstance(sweeps, Mapping):
        c.add("sweeps", f"expected a mapping of key.path: [values], got {describe(sweeps)}")
        return [({}, base)]
    keys, value_lists = [], []
    for key, values in sweeps.items():
        if not isinstance(values, list) or not values:
            c.add(join("sweeps", key), f"expected a non-empty list of values, got {describe(values)}")
            continue
        if str(key).split(".")[0] not in sweepable:
            c.add(join("sweeps", key), f"cannot sweep '{key}': its first part must be one of {', '.join(sweepable)}")
            continue
        keys.append(str(key))
        value_lists.append(values)
    variants = []
    for combination in itertools.product(*value_lists):
        variant = copy.deepcopy(base)
        for key, value in zip(keys, combination, strict=True):
            set_path(variant, key, value)
        variants.append((dict(zip(keys, combination, strict=True)), variant))
    return variants
