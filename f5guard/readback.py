"""What f5guard reads back from files it does not control (home is shared, synced late and edited by people):
does a value match the annotation that describes it, and is an epoch or update a plausible count?

A string where a number belongs, NaN, a list where a note belongs must be caught where the file is read, not as
a traceback in ``status`` hours later. A claim, state copy, manifest or checkpoint name whose epoch is 1e308,
2**63, "3" or true is no evidence of anything: it is ignored (and reported where it is read), never taken as
this runtime's epoch floor, or every later start would inherit it. Stdlib only (``status`` stays fast).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import sys
import types
import typing
from typing import Any, Union


def conforms(value: Any, hint: Any) -> bool:
    """True when ``value`` (from json.loads) is what ``hint`` says: an int is not a bool, a float is finite,
    a TypedDict has its required keys, an Enum holds one of its values."""
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if hint in (bool, int, str):
        return type(value) is hint
    if hint is float:
        return finite(value)
    if origin is list:
        return isinstance(value, list) and all(conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items())
    if typing.is_typeddict(hint):
        return _typed_dict(value, hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return any(value == member.value and type(value) is type(member.value) for member in hint)
    return False


def finite(value: Any) -> bool:
    """A JSON number usable as a float: not NaN or infinite, not an integer too large for a float (an int of
    400 digits is valid JSON; formatting it as a float raises OverflowError)."""
    if type(value) is int:
        return abs(value) <= sys.float_info.max
    return type(value) is float and math.isfinite(value)


def _typed_dict(value: Any, hint: Any) -> bool:
    if not isinstance(value, dict):
        return False
    hints = hints_of(hint)
    required: frozenset[str] = hint.__required_keys__
    return all(key in value for key in required) and all(
        conforms(item, hints[key]) for key, item in value.items() if key in hints
    )


@functools.cache
def hints_of(cls: Any) -> dict[str, Any]:
    """The resolved annotations of a dataclass or TypedDict (modules use ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def checked_fields(cls: Any, data: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    """The fields of dataclass ``cls`` found in ``data`` that match their annotations; each one that does not
    is left to its default and named in ``problems`` (one bad figure must not cost the whole document)."""
    hints = hints_of(cls)
    kept: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        value = data[field.name]
        if conforms(value, hints[field.name]):
            kept[field.name] = value
        else:
            problems.append(f"{where}.{field.name} = {_short(value)} is not a {_name(hints[field.name])}; ignored")
    return kept


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


MAX_EPOCH = 10**9  # one per takeover: a home with a billion takeovers is a corrupt file
MAX_UPDATE = 10**12  # F5-TTS counts optimizer updates: a trillion is no real training


def counted(value: Any, most: int) -> int | None:
    """``value`` when it is a true integer (not a bool, float or string) in 0..``most``; else None."""
    if type(value) is not int or not 0 <= value <= most:
        return None
    return value


def epoch_of(value: Any) -> int | None:
    return counted(value, MAX_EPOCH)


def update_of(value: Any) -> int | None:
    return counted(value, MAX_UPDATE)


def epoch_in_name(digits: str) -> int | None:
    """An epoch spelled in a file name (``state-e0003``, ``ckpt-e0003``): digits only, within bounds."""
    return epoch_of(int(digits)) if digits.isdigit() and len(digits) <= len(str(MAX_EPOCH)) else None
