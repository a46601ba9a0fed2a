"""The daemon's pidfile, the one reliable liveness test (the work dir's flock), and how its last life ended.

A pidfile alone goes stale (a swept /tmp made supervisord's CLI start a duplicate); the kernel drops a flock
when its holder dies, so "can I take the lock?" is the truth. Stdlib only: ``status`` must start fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from f5guard.fsutil import atomic_write_json


@dataclass(frozen=True)
class DaemonInfo:
    pid: int
    host: str
    started_at: float
    boot_id: str
    config: str
    version: str
    epoch: int = 0
    phase: str = "starting"  # starting | waiting-lease | ready | stopping


def write(path: Path, info: DaemonInfo) -> None:
    atomic_write_json(path, asdict(info))


def read(path: Path) -> DaemonInfo | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return DaemonInfo(**data)
    except (OSError, ValueError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """A zombie is dead: its exit only waits to be collected (containers whose PID 1 never reaps keep them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def frozen(pid: int) -> bool:
    """Stopped by a signal (SIGSTOP, SIGTSTP) or a debugger: alive, but it does nothing until SIGCONT."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] in ("T", "t")


def lock_is_held(lock_path: Path) -> bool:
    """True while a live daemon holds the work dir's flock (taking it briefly proves nobody does)."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def running_daemon(lock_path: Path, pid_path: Path) -> DaemonInfo | None:
    """The live daemon's info, or None; a pidfile without a held lock is stale and ignored."""
    if not lock_is_held(lock_path):
        return None
    return read(pid_path) or DaemonInfo(pid=0, host="?", started_at=0.0, boot_id="?", config="?", version="?")


@dataclass(frozen=True)
class ExitNote:
    """How the daemon's last life in this work dir ended, for ``status`` and the next ``start``: never a
    silent death (a crash, a lost lease, a failed start, a stop)."""

    at: float
    pid: int
    reason: str  # one line
    code: int
    crashed: bool = False


ROOM_BYTES = 64 * 1024  # set aside at start, freed to write the exit note on a full disk


def _room(path: Path) -> Path:
    return path.with_name(f".{path.name}.room")


def reserve_exit_room(path: Path) -> None:
    """Set a little disk aside for the exit note: a daemon dying of a full disk still says so."""
    with contextlib.suppress(OSError):
        room = _room(path)
        if not room.exists() or room.stat().st_size < ROOM_BYTES:
            room.write_bytes(b"\0" * ROOM_BYTES)


def write_exit(path: Path, note: ExitNote) -> bool:
    """Write the note (freeing the reserved room when the disk is full); never raises. True when written."""
    for attempt in range(2):
        try:
            atomic_write_json(path, asdict(note))
        except OSError:
            if attempt == 0:  # the last thing a dying daemon does: never the cause of another error
                with contextlib.suppress(OSError):
                    _room(path).unlink()
            continue
        return True
    return False


def file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``: the lock file a daemon holds is its work dir's, until someone replaces it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def remove_if_mine(path: Path, pid: int, started_at: float) -> bool:
    """Remove the pidfile only when it is this daemon's (pid and start time): a successor's stays."""
    info = read(path)
    if info is None or info.pid != pid or info.started_at != started_at:
        return False
    with contextlib.suppress(OSError):
        path.unlink()
    return True


def read_exit(path: Path) -> ExitNote | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return ExitNote(**data)
    except (OSError, ValueError, TypeError):
        return None
