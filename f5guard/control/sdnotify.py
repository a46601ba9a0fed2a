"""systemd's notify protocol (READY=1, WATCHDOG=1, STOPPING=1, STATUS=...) without a dependency."""

from __future__ import annotations

import contextlib
import os
import socket


def notify(message: str) -> bool:
    """Send one datagram to $NOTIFY_SOCKET; a no-op (False) outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode("utf-8"))
        return True
    return False


def watchdog_ping() -> bool:
    """Tell systemd's watchdog we are alive (WatchdogSec in the unit)."""
    return notify("WATCHDOG=1")


def watchdog_interval_s() -> float | None:
    """Half of WatchdogSec when systemd watches this process, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 / 2
    except ValueError:
        return None
