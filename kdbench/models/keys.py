"""How a model family declares the CRD code's names for its tensors (its ``crd_key_rules``).

The CRD code (RepDistiller) saves ``{'model': state_dict}`` with its own module names (its ``conv1``
is our ``stem.0``). Each family states, next to its definition, a list of prefix rules turning our
keys into the CRD code's, or ``crd_key_rules = None`` when it has no CRD counterpart (its files then
keep our own key names). ``kdbench.models.checkpoint`` applies the rules; a contract test checks
that every registered model declares them and round-trips through a file.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: (regex matching the start of our key, the CRD code's replacement for it); the first matching rule applies
KeyRule = tuple[str, str | Callable[[re.Match[str]], str]]

#: ``stages.<i>.blocks.<j>.``: the stage view's block prefix
STAGE_BLOCK = r"stages\.(\d+)\.blocks\.(\d+)\."


def stage_block(template: str) -> Callable[[re.Match[str]], str]:
    """Our ``stages.<i>.blocks.<j>.`` as ``template`` formatted with the CRD code's ``stage`` = i + 1, ``block`` = j."""
    return lambda match: template.format(stage=int(match[1]) + 1, block=int(match[2]))
