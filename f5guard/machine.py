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
