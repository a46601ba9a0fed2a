"""What anyone can read about the home lease without holding it: the holder, its heartbeat age, the epoch.

Stdlib only, so ``status`` stays fast; ``lease.py`` holds the lease itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from f5guard.fsutil import read_json
from f5guard.layout import HomeLayout
from f5guard.machine import hostname
from f5guard.pidfile import pid_alive
from f5guard.schema import LeaseSettings


@dataclass(frozen=True)
class EpochRecord:
    """Who holds (or is taking) the lease, and its generation."""

    epoch: int
    host: str
    pid: int
    token: str | None
    since: float  # wall clock of the writer: shown to people, never used to judge liveness
    takeover: bool = False


@dataclass(frozen=True)
class Holder:
    """What a peer can see of the current lease holder."""

    host: str
    pid: int
    heartbeat_age_s: float | None  # from the marker's mtime: an estimate across machines
    epoch: int | None
    same_host: bool
    pid_alive: bool | None  # only knowable on the same host

    def describe(self) -> str:
        age = "unknown" if self.heartbeat_age_s is None else f"{self.heartbeat_age_s:.0f}s ago"
        epoch = "" if self.epoch is None else f", epoch {self.epoch}"
        return f"host {self.host}, pid {self.pid}{epoch}, last heartbeat {age}"


def read_epoch(path: Path) -> EpochRecord | None:
    try:
        data = read_json(path)
        return EpochRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def _read_marker(path: Path) -> tuple[dict[str, str], os.stat_result] | None:
    """Parse filelock's marker (``filelock/2`` then key=value lines) for display only."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = dict(line.partition("=")[::2] for line in text.splitlines()[1:] if "=" in line)
    return fields, st


def current_holder(layout: HomeLayout) -> Holder | None:
    marker = _read_marker(layout.lease)
    if marker is None:
        return None
    fields, st = marker
    try:
        pid = int(fields.get("pid", ""))
    except ValueError:
        return None
    host = fields.get("host", "?")
    same = host == hostname()
    record = read_epoch(layout.epoch)
    epoch = record.epoch if record and record.pid == pid and record.host == host else None
    return Holder(
        host=host,
        pid=pid,
        heartbeat_age_s=max(0.0, time.time() - st.st_mtime),
        epoch=epoch,
        same_host=same,
        pid_alive=pid_alive(pid) if same else None,
    )


def looks_live(holder: Holder, settings: LeaseSettings) -> bool:
    """Refuse-or-wait decision for ``start``; the takeover itself still waits a full lease on our own clock."""
    if holder.same_host:
        return bool(holder.pid_alive)
    return holder.heartbeat_age_s is not None and holder.heartbeat_age_s < settings.duration_s
