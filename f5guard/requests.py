"""Requests from the CLI to the daemon, as files: the daemon stays the only writer of state.

``reset`` drops a request file and pokes the daemon with SIGUSR1; with no daemon running, the file waits and
the next daemon applies it before planning (``start --dry-run`` shows its effect too).
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
