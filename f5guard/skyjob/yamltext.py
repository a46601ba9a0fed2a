"""A SkyPilot task as YAML text, without a YAML library: the task holds only mappings, lists of numbers, strings,
numbers and booleans. One-line strings are JSON strings (valid YAML double-quoted scalars); scripts are literal
blocks (``|``), kept byte for byte."""

from __future__ import annotations

import json
from typing import Any


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"no YAML form here for {type(value).__name__}")


def _block(text: str, indent: str) -> str:
    """A literal block: ``|`` keeps one final newline (``|-`` none, ``|+`` all); an indentation indicator when the
    first line starts with a space."""
    chomp = "-" if not text.endswith("\n") else ("+" if text.endswith("\n\n") else "")
    first = text.split("\n", 1)[0]
    head = "|" + ("2" if first[:1] in (" ", "\t") else "") + chomp
    lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    return head + "\n" + "\n".join(indent + line if line else "" for line in lines)


def _emit(data: dict[str, Any], depth: int) -> list[str]:
    pad = "  " * depth
    out: list[str] = []
    for key, value in data.items():
        name = key if key.isidentifier() else _scalar(key)
        if isinstance(value, dict):
            out.append(f"{pad}{name}:")
            out.extend(_emit(value, depth + 1))
        elif isinstance(value, list):
            out.append(f"{pad}{name}: [{', '.join(_scalar(v) for v in value)}]")
        elif isinstance(value, str) and "\n" in value:
            out.append(f"{pad}{name}: {_block(value, pad + '  ')}")
        else:
            out.append(f"{pad}{name}: {_scalar(value)}")
    return out


def dump(task: dict[str, Any], comments: list[str]) -> str:
    """The YAML text of ``task``, after ``comments`` (one ``#`` line each)."""
    head = [f"# {line}".rstrip() for line in comments]
    return "\n".join([*head, *_emit(task, 0)]) + "\n"
