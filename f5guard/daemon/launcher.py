"""Client side of ``start``: spawn the daemon in its own session and wait for its word on a pipe.

The daemon reports through an inherited pipe, in the protocol's messages (control/protocol.py: waiting for the
lease, ready, failed and why, already running), then closes it: ``start`` never returns on a silent failure,
and the notebook cell holds no pipe of the daemon open afterwards. Stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from f5guard.control.protocol import (
    FINAL_REPORTS,
    START_REPORTS,
    ProtocolError,
    StartFailed,
    StartReport,
    WaitingLease,
    decode,
)

READY_FD_ENV = "F5GUARD_READY_FD"


@dataclass(frozen=True)
class LaunchResult:
    pid: int
    messages: list[StartReport]
    exited: int | None  # the daemon's exit status when it died before reporting ready

    @property
    def last(self) -> StartReport | None:
        return self.messages[-1] if self.messages else None


def spawn_daemon(
    config: Path,
    stdio_log: Path,
    *,
    takeover: bool,
    accept_older: bool = False,
    timeout_s: float = 30.0,
    lease_wait_s: float = 10.0,
) -> LaunchResult:
    """Start ``python -m f5guard.daemon`` detached (setsid) and read its status messages until it settles.

    A daemon waiting for the lease gets ``lease_wait_s`` more to finish a takeover; then ``start`` returns
    and says what it waits for.
    """
    stdio_log.parent.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, True)
    out_fd = os.open(stdio_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    argv = [sys.executable, "-m", "f5guard.daemon", "--config", str(config)]
    if takeover:
        argv.append("--takeover")
    if accept_older:
        argv.append("--accept-older")
    env = {**os.environ, READY_FD_ENV: str(write_fd), "PYTHONUNBUFFERED": "1"}
    try:
        pid = os.posix_spawn(
            sys.executable,
            argv,
            env,
            setsid=True,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, null_fd, 0),
                (os.POSIX_SPAWN_DUP2, out_fd, 1),
                (os.POSIX_SPAWN_DUP2, out_fd, 2),
            ],
        )
    finally:
        for fd in (write_fd, out_fd, null_fd):
            os.close(fd)
    return _read_reports(pid, read_fd, timeout_s, lease_wait_s)


def _read_reports(pid: int, read_fd: int, timeout_s: float, lease_wait_s: float) -> LaunchResult:
    messages: list[StartReport] = []
    buffer = b""
    deadline = time.monotonic() + timeout_s
    waiting = False
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([read_fd], [], [], left)
            if not ready:
                break
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break  # the daemon closed the pipe: it reported what it had to say, or died
            buffer += chunk
            while b"\n" in buffer:
                try:
                    message, buffer = decode(buffer, START_REPORTS)
                except ProtocolError:  # not ours (a stray write to the fd): skip the line
                    buffer = buffer.split(b"\n", 1)[1]
                    continue
                messages.append(message)  # type: ignore[arg-type] # decode(.., START_REPORTS) made one
            last = messages[-1] if messages else None
            if isinstance(last, FINAL_REPORTS):
                break
            if isinstance(last, WaitingLease) and not waiting:
                waiting, deadline = True, min(deadline, time.monotonic() + lease_wait_s)
    finally:
        os.close(read_fd)
    exited: int | None = None
    if not messages or isinstance(messages[-1], StartFailed):
        exited = _reap(pid, wait_s=2.0)
    return LaunchResult(pid=pid, messages=messages, exited=exited)


def _reap(pid: int, wait_s: float) -> int | None:
    deadline = time.monotonic() + wait_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


class ReadyChannel:
    """The daemon's end of the pipe; a no-op when not started by ``spawn_daemon`` (foreground, systemd)."""

    def __init__(self) -> None:
        fd = os.environ.pop(READY_FD_ENV, None)
        self._fd: int | None = int(fd) if fd and fd.isdigit() else None
        if self._fd is not None:
            os.set_inheritable(self._fd, False)  # children (stages) must not keep the cell's pipe open

    def send(self, report: StartReport) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, report.encode())
        except OSError:
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
