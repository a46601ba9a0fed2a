"""Fingerprints: what a stage's result depends on (command, params, inputs), DVC-style.

Small files are identified by content hash, big ones by size + mtime (hashing gigabytes of audio on Drive at
every start would cost minutes). A recorded hash is reused while size and mtime are unchanged, so an
up-to-date check costs one ``stat`` per file. Only regular files are read: a FIFO, socket, device, dangling
symlink, loop or unreadable file is recorded as ``skipped: <reason>`` (regularfiles.py), and patterns are
expanded within a bound (walk.py). Paths are keyed by their shown name (non-UTF-8 bytes escaped).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from f5guard.errors import ConfigError
from f5guard.regularfiles import Unreadable, check, open_regular, problem
from f5guard.schema import StageConfig
from f5guard.stages.walk import expand

BIG_FILE_BYTES = 64 * 1024 * 1024
MISSING = "missing"
SKIPPED = "skipped: "  # + the reason: a file found but never read (not regular, dangling, unreadable)


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _options(stage: StageConfig) -> Mapping[str, object]:
    return stage.options.fingerprint() if stage.options is not None else {}


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}"


def file_signature(path: str, previous: str | None = None) -> str:
    """``<size>:<mtime_ns>`` plus ``#<sha256>`` for small files; reuses ``previous``'s hash when stat matches.
    ``missing`` when absent, ``skipped: <reason>`` for what is not read (never blocks on a FIFO)."""
    try:
        st = check(path)
    except Unreadable as err:
        return SKIPPED + err.reason
    except FileNotFoundError:
        return MISSING
    except OSError as err:
        return SKIPPED + f"cannot look at it: {err.strerror or err}"
    key = _stat_key(st)
    if st.st_size > BIG_FILE_BYTES:
        return key
    if previous and previous.split("#", 1)[0] == key and "#" in previous:
        return previous
    h = hashlib.sha256()
    try:
        with open_regular(path) as handle:
            while block := handle.read(1 << 20):
                h.update(block)
    except FileNotFoundError:
        return MISSING
    except OSError as err:
        return SKIPPED + (problem(path, err) or f"read failed: {err.strerror or err}")
    return f"{key}#{h.hexdigest()}"


def _content(signature: str) -> str:
    """What identifies the content: the hash when there is one, else the whole signature."""
    if signature.startswith(SKIPPED) or "#" not in signature:
        return signature
    return signature.split("#", 1)[1]


def same_content(old: str, new: str) -> bool:
    """Equal files: same hash when both have one (a copy with a new mtime is still the same), else same stat."""
    if MISSING in (old, new) or old.startswith(SKIPPED) or new.startswith(SKIPPED):
        return old == new
    if "#" in old and "#" in new:
        return old.split("#", 1)[1] == new.split("#", 1)[1]
    return old.split("#", 1)[0] == new.split("#", 1)[0]


def expand_files(patterns: Iterable[str]) -> dict[str, str | None]:
    """Every file the patterns name (folders walked, globs matched, within walk.MAX_ENTRIES), keyed by shown
    name, to its real path; a literal path that is absent maps to None. ConfigError for a pattern refused."""
    return expand(patterns)[0]


def signatures(patterns: Iterable[str], previous: Mapping[str, str] | None = None) -> dict[str, str]:
    previous = previous or {}
    return {
        key: (file_signature(path, previous.get(key)) if path is not None else MISSING)
        for key, path in expand_files(patterns).items()
    }


def skipped(signed: Mapping[str, str]) -> list[tuple[str, str]]:
    """(path, reason) of every file that was found but not read."""
    return [(path, sig[len(SKIPPED) :]) for path, sig in signed.items() if sig.startswith(SKIPPED)]


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
    comparable = {**parts, "inputs": {p: _content(s) for p, s in parts["inputs"].items()}}
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
        elif new_in[path].startswith(SKIPPED) and not old_in[path].startswith(SKIPPED):
            reasons.append(f"input {path} is now {new_in[path]}")
        elif not same_content(old_in[path], new_in[path]):
            reasons.append(f"input modified: {path}")
    return reasons


def check_outputs(patterns: Iterable[str], recorded: Mapping[str, str]) -> list[str]:
    """Problems with a stage's outputs now versus when it finished; empty means they are intact."""
    try:
        current, unmatched = expand(patterns)
    except ConfigError as err:  # too many entries: a problem with the outputs (the stage fails), not a crash
        return [f"outputs: {err.message}"]
    problems = [f"output missing: {pattern}" for pattern in unmatched]
    if problems:
        return problems
    for key, old in sorted(recorded.items()):
        # keys are shown names: the real path of one with escaped bytes comes from the expansion
        new = file_signature(current.get(key) or key, old)
        if new == MISSING:
            problems.append(f"output missing: {key}")
        elif not same_content(old, new):
            problems.append(f"output changed since it was made: {key}")
    return problems


def record_outputs(patterns: Iterable[str]) -> dict[str, str]:
    return signatures(patterns)
