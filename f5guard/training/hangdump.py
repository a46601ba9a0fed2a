"""A hung training's stacks in the stage log: one labelled block per process (trainer or launcher, each rank,
each DataLoader worker), never interleaved.

Each process of the attempt is dumped on its own: with py-spy where it is installed (it reads a process from
outside, stopped or not), else through the file the process registered for it (trainer/stackdump.py:
faulthandler on SIGUSR1). A stopped process (SIGSTOP) cannot run its handler: it is continued for the dump
and stopped again. Then the block goes to the stage log in one piece, headed by pid, role and command line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil

from f5guard.trainer import stackdump

WAIT_S = 3.0  # for every registered process to finish writing its dump
PY_SPY_TIMEOUT_S = 15.0
_SETTLE_S = 0.15  # a dump file that stopped growing this long is complete (faulthandler writes in one go)


class BlockLog(Protocol):
    def block(self, lines: list[str]) -> None: ...


@dataclass
class _Pending:
    proc: psutil.Process
    label: str
    path: Path
    offset: int
    stopped: bool
    size: int = -1
    changed: float = 0.0


def dump_stacks(
    leader_pid: int, stage_dir: Path, log: BlockLog, *, wait_s: float = WAIT_S, py_spy: str | None = None
) -> int:
    """Dump every live process of the group ``leader_pid`` leads into ``log``; returns how many blocks.
    ``py_spy``: its path (default: found on PATH; "" to do without it)."""
    try:
        leader = psutil.Process(leader_pid)
        procs = [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return 0
    folder = stackdump.stack_dir(stage_dir)
    registry = stackdump.read_registry(folder)
    py_spy = shutil.which("py-spy") if py_spy is None else py_spy or None
    pending: list[_Pending] = []
    blocks = 0
    for proc in procs:
        try:
            cmdline, status = proc.cmdline(), proc.status()
        except psutil.Error:
            continue
        if status == psutil.STATUS_ZOMBIE:
            continue
        note = registry.get(proc.pid)
        registered = note is not None and note.get("cmdline") == cmdline  # an exec'd or reused pid is not it
        role = str(note["role"]) if registered and note else "not an f5guard trainer process"
        label = f"pid {proc.pid} · {role} · {_short(cmdline)}"
        if py_spy and _py_spy(py_spy, proc.pid, label, log):
            blocks += 1
        elif not registered:
            why = "no stacks: it did not register for a dump (not Python, or not started by f5guard's trainer)"
            log.block(_framed(label, proc.pid, [why + ("" if py_spy else "; py-spy, when installed, reads any")]))
            blocks += 1
        elif (item := _signal(proc, label, folder, stopped=status == psutil.STATUS_STOPPED)) is not None:
            pending.append(item)
    return blocks + _collect(pending, log, wait_s)


def _signal(proc: psutil.Process, label: str, folder: Path, *, stopped: bool) -> _Pending | None:
    path = stackdump.dump_path(folder, proc.pid)
    try:
        offset = path.stat().st_size
        os.kill(proc.pid, stackdump.SIGNAL)
        if stopped:  # a stopped process runs its handler only once continued
            os.kill(proc.pid, signal.SIGCONT)
    except OSError:
        return None
    return _Pending(proc, label + (" · was stopped (SIGSTOP)" if stopped else ""), path, offset, stopped)


def _collect(pending: list[_Pending], log: BlockLog, wait_s: float) -> int:
    """Each dump into the log as soon as its file stops growing; the late ones said to be late."""
    blocks = 0
    deadline = time.monotonic() + wait_s
    while pending:
        now = time.monotonic()
        for item in list(pending):
            size = _size(item.path)
            if size != item.size:
                item.size, item.changed = size, now
            elif size > item.offset and now - item.changed >= _SETTLE_S:
                _restop(item)
                log.block(_framed(item.label, item.proc.pid, _read(item.path, item.offset)))
                blocks += 1
                pending.remove(item)
        if now >= deadline:
            for item in pending:
                _restop(item)
                log.block(_framed(item.label, item.proc.pid, [f"no stacks within {wait_s:g} s"]))
                blocks += 1
            break
        time.sleep(0.05)
    return blocks


def _py_spy(py_spy: str, pid: int, label: str, log: BlockLog) -> bool:
    """py-spy's dump of one process; False where it cannot (it fails on a stopped process: "Failed to
    suspend process"), and faulthandler's file answers instead."""
    try:
        out = subprocess.run([py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True,
                             timeout=PY_SPY_TIMEOUT_S, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    if out.returncode != 0:
        return False
    log.block(_framed(label + " · py-spy", pid, out.stdout.splitlines()))
    return True


def _restop(item: _Pending) -> None:
    if item.stopped:  # leave it as it was found
        with contextlib.suppress(OSError):
            os.kill(item.proc.pid, signal.SIGSTOP)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _read(path: Path, offset: int) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace").rstrip("\n").splitlines()
    except OSError as err:
        return [f"could not read {path}: {err.strerror or err}"]


def _framed(label: str, pid: int, lines: list[str]) -> list[str]:
    return [f"===== stacks of {label} =====", *lines, f"===== end of the stacks of pid {pid} ====="]


def _short(cmdline: list[Any], limit: int = 160) -> str:
    text = " ".join(str(x) for x in cmdline)
    return text if len(text) <= limit else text[: limit - 1] + "…"
