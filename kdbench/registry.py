"""One small registry: name -> factory, with aliases and "did you mean" errors."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; ``str()`` is the whole user-facing message."""

    def __init__(self, message: str, name: str, choices: list[str]):
        super().__init__(message)
        self.message = message
        self.name = name
        self.choices = choices

    def __str__(self) -> str:
        return self.message


def _normalise(name: str) -> str:
    # 'WRN-40-2', 'wrn_40_2' and 'Wrn40_2' all mean the same network.
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _is_abbreviation(short: str, long: str) -> bool:
    """'ckpt' abbreviates 'checkpoint': its letters appear in order."""
    letters = iter(long)
    return len(short) < len(long) and all(ch in letters for ch in short)


def _number_gap(a: str, b: str) -> float:
    """How far apart the trailing numbers of two names are ('resnet57' is nearer 'resnet56' than 'resnet50')."""
    found_a, found_b = re.search(r"(\d+)$", a), re.search(r"(\d+)$", b)
    if not found_a or not found_b:
        return float("inf")
    return abs(int(found_a[1]) - int(found_b[1]))


def nearest_first(name: str, choices: Iterable[str]) -> list[str]:
    """``choices`` sorted by similarity to ``name``, the closest first.

    Edit distance first, where an abbreviation ('ckpt' of 'checkpoint') counts as 1.5 edits, so it
    beats far names but not a one-letter typo ('kdd' -> 'kd' before 'kdsvd'); then, for the same
    distance, the nearer trailing number ('resnet57' -> 'resnet56' before 'resnet50'), the similarity
    ratio, and the name.
    """
    key = _normalise(str(name))

    def rank(choice: str) -> tuple:
        other = _normalise(choice)
        distance = float(_edit_distance(key, other))
        if _is_abbreviation(key, other):
            distance = min(distance, 1.5)
        return (distance, _number_gap(key, other), -difflib.SequenceMatcher(None, key, other).ratio(), choice)

    return sorted(choices, key=rank)


def suggestion(name: object, ordered: list[str]) -> str | None:
    """The first of ``ordered`` (nearest first) if it is close enough to be worth suggesting."""
    if not ordered:
        return None
    key, best = _normalise(str(name)), _normalise(ordered[0])
    if _is_abbreviation(key, best) or difflib.SequenceMatcher(None, key, best).ratio() >= 0.6:
        return ordered[0]
    return None


def unknown_name_message(kind: str, name: object, choices: Iterable[str]) -> str:
    """Unknown model 'resnet21'. Did you mean 'resnet20'? Available: ... (nearest first)."""
    ordered = nearest_first(str(name), choices)
    close = suggestion(name, ordered)
    hint = f" Did you mean '{close}'?" if close else ""
    return f"Unknown {kind} '{name}'.{hint} Available: {', '.join(ordered)}"


class Registry(Generic[T]):
    """Maps canonical names (and aliases) to factories."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._display: dict[str, str] = {}
        self._facts: dict[str, dict[str, Any]] = {}

    def register(self, name: str, *, aliases: Iterable[str] = (), **facts: Any) -> Callable[[T], T]:
        """Register ``name``; ``facts`` are what others need to know about the entry without building it
        (a data set's class count and image shape), kept here beside the entry's own definition."""

        def decorator(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            self._facts[name] = dict(facts)
            self._display[name] = next(iter(aliases), name)
            for alias in (name, *aliases):
                self._aliases[_normalise(alias)] = name
            return entry

        return decorator

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases."""
        try:
            return self._aliases[_normalise(str(name))]
        except KeyError:
            raise UnknownNameError(
                unknown_name_message(self.kind, name, self.names()), str(name), self.names()
            ) from None

    def display(self, name: str) -> str:
        """The paper's spelling (the first alias), e.g. 'WRN-40-2' for 'wrn_40_2'."""
        return self._display[self.canonical(name)]

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def facts(self, name: str) -> dict[str, Any]:
        """What the entry declared about itself when it registered."""
        return self._facts[self.canonical(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _normalise(name) in self._aliases

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())
