"""Decide whether two path patterns can name the same file: the data-flow check behind stage ordering."""

from __future__ import annotations

import fnmatch
from pathlib import PurePath

_GLOB_CHARS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


def literal_prefix(pattern: str) -> PurePath:
    """The folder a glob starts from: its leading parts without wildcards."""
    parts: list[str] = []
    for part in PurePath(pattern).parts:
        if is_glob(part):
            break
        parts.append(part)
    return PurePath(*parts) if parts else PurePath("/")


def _nested(a: PurePath, b: PurePath) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def patterns_overlap(a: str, b: str) -> bool:
    """True when one file could match both patterns (conservative for two globs)."""
    if not is_glob(a) and not is_glob(b):
        return _nested(PurePath(a), PurePath(b))
    if is_glob(a) and not is_glob(b):
        a, b = b, a
    if not is_glob(a):
        # A literal path matched by the glob, or a folder that holds what the glob names.
        return fnmatch.fnmatchcase(a, b) or literal_prefix(b).is_relative_to(a)
    return _nested(literal_prefix(a), literal_prefix(b)) and (fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a))
