"""Does parsed JSON match the annotation that describes it? For files f5guard reads back (state copies on home):
a string where a number belongs, NaN, a list where a note belongs must be caught where the file is read, not
as a traceback in ``status`` hours later. Stdlib only (``status`` stays fast)."""

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
