"""Fingerprints: what a stage's result depends on (command, params, inputs), DVC-style.

Small files are identified by content hash, big ones by size + mtime (hashing gigabytes of audio on Drive at
every start would cost minutes). A recorded hash is reused while size and mtime are unchanged, so an
up-to-date check costs one ``stat`` per file.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from f5guard.schema import StageConfig
from f5guard.stages.overlap import is_glob

BIG_FILE_BYTES = 64 * 1024 * 1024
MISSING = "missing"


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _options(stage: StageConfig) -> Mapping[str, object]:
    return stage.options.fingerprint() if stage.options is not None else {}


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}"


def file_signature(path: str, previous: str | None = None) -> str:
    """``<size>:<mtime_ns>`` plus ``#<sha256>`` for small files; reuses ``previous``'s hash when stat matches."""
    try:
        st = os.stat(path)
    except OSError:
        return MISSING
    key = _stat_key(st)
    if st.st_size > BIG_FILE_BYTES:
        return key
    if previous and previous.split("#", 1)[0] == key and "#" in previous:
        return previous
    h = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                h.update(block)
    except OSError:
        return MISSING
    return f"{key}#{h.hexdigest()}"


def same_content(old: str, new: str) -> bool:
    """Equal files: same hash when both have one (a copy with a new mtime is still the same), else same stat."""
    if MISSING in (old, new):
        return old == new
    if "#" in old and "#" in new:
        return old.split("#", 1)[1] == new.split("#", 1)[1]
    return old.split("#", 1)[0] == new.split("#", 1)[0]


def expand_files(patterns: Iterable[str]) -> dict[str, str | None]:
    """Every file the patterns name (folders walked, globs matched); a literal path that is absent maps to None."""
    files: dict[str, str | None] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if is_glob(pattern) else [pattern]
        for match in matches:
            if os.path.isdir(match):
                for root, dirs, names in os.walk(match):
                    dirs.sort()
                    for name in sorted(names):
                        files[os.path.join(root, name)] = ""
            elif os.path.exists(match):
                files[match] = ""
            elif not is_glob(pattern):
                files[match] = None
    return files


def signatures(patterns: Iterable[str], previous: Mapping[str, str] | None = None) -> dict[str, str]:
    previous = previous or {}
    return {
        path: (file_signature(path, previous.get(path)) if present is not None else MISSING)
        for path, present in expand_files(patterns).items()
    }


@dataclass(frozen=True)
class Fingerprint:
    digest: str
    parts: dict[str, Any]


def fingerprint(stage: StageConfig, previous_parts: Mapping[str, Any] | None = None) -> Fingerprint:
    """The stage's identity now. Left out on purpose: env (tokens and CUDA_VISIBLE_DEVICES don't change data) and
    cwd (the same config opened from another folder on a new VM must not rerun a day of work)."""
    prev_inputs = (previous_parts or {}).get("inputs", {})
    parts: dict[str, Any] = {
        "kind": stage.kind,
        # A kind may name what its result depends on (``identity``): the train stage's command and options
        # hold paths in the work dir, which a new VM may place elsewhere without changing the training.
        "command": _digest(stage.identity if stage.identity is not None else stage.command),
        "params": _digest(stage.params),
        "options": _digest(stage.identity if stage.identity is not None else _options(stage)),
        "inputs": signatures(stage.inputs, prev_inputs if isinstance(prev_inputs, dict) else None),
    }
    comparable = {**parts, "inputs": {p: (s.split("#", 1)[1] if "#" in s else s) for p, s in parts["inputs"].items()}}
    return Fingerprint(_digest(comparable), parts)


def explain_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Say what changed between two fingerprints' parts, like ``dvc status``."""
    reasons = [f"{key} changed" for key in ("kind", "command", "params", "options") if old.get(key) != new.get(key)]
    old_in: Mapping[str, str] = old.get("inputs", {})
    new_in: Mapping[str, str] = new.get("inputs", {})
    for path in sorted(set(old_in) | set(new_in)):
        if path not in old_in:
            reasons.append(f"input added: {path}")
        elif path not in new_in or new_in[path] == MISSING:
            reasons.append(f"input removed: {path}")
        elif not same_content(old_in[path], new_in[path]):
            reasons.append(f"input modified: {path}")
    return reasons


def check_outputs(patterns: Iterable[str], recorded: Mapping[str, str]) -> list[str]:
    """Problems with a stage's outputs now versus when it finished; empty means they are intact."""
    problems: list[str] = []
    for pattern in patterns:
        exists = bool(glob.glob(pattern, recursive=True)) if is_glob(pattern) else os.path.exists(pattern)
        if not exists:
            problems.append(f"output missing: {pattern}")
    if problems:
        return problems
    for path, old in sorted(recorded.items()):
        new = file_signature(path, old)
        if new == MISSING:
            problems.append(f"output missing: {path}")
        elif not same_content(old, new):
            problems.append(f"output changed since it was made: {path}")
    return problems


def record_outputs(patterns: Iterable[str]) -> dict[str, str]:
    return signatures(patterns)
