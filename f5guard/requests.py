"""Resets queued in files for a daemon that is not answering: the daemon stays the only writer of state.

A live daemon gets a reset request on its socket (control/protocol.py). With no daemon running (or one too busy
to answer), ``reset`` queues a file here: the next daemon applies it before planning, a running one within
seconds (``start --dry-run`` shows its effect too).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from f5guard.fsutil import atomic_write_json, read_json


@dataclass(frozen=True)
class ResetRequest:
    run: str
    stage: str | None
    created_at: float


def submit(requests_dir: Path, request: ResetRequest) -> Path:
    path = requests_dir / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.reset.json"
    atomic_write_json(path, asdict(request))
    return path


def pending(requests_dir: Path) -> list[tuple[Path, ResetRequest | None]]:
    """Requests in submission order; an unreadable file maps to None so the caller can report and drop it."""
    try:
        names = sorted(p for p in requests_dir.iterdir() if p.name.endswith(".reset.json"))
    except OSError:
        return []
    found: list[tuple[Path, ResetRequest | None]] = []
    for path in names:
        try:
            found.append((path, ResetRequest(**read_json(path))))
        except (OSError, ValueError, TypeError):
            found.append((path, None))
    return found


def done(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
