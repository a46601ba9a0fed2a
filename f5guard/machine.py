"""Facts about this machine that decide what is still valid: boot id (runtime stages), host name."""

from __future__ import annotations

import os
from pathlib import Path

BOOT_ID_ENV = "F5GUARD_BOOT_ID"  # tests simulate "a fresh VM" with it; Colab gives every VM a new boot id


def boot_id() -> str:
    override = os.environ.get(BOOT_ID_ENV)
    if override:
        return override
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def hostname() -> str:
    return os.uname().nodename  # what socket.gethostname() returns, without importing socket


def pid_namespace() -> str:
    """The pid namespace we run in: pids are only comparable inside one (Colab runs notebooks in a container)."""
    try:
        return os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        return "unknown"


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: tells a live process from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20 or fields[0] == "Z":
        return None  # a zombie is dead: its exit only waits to be collected
    return int(fields[19])
