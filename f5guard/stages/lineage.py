"""Every process the daemon starts ends with it, down to grandchildren that left its process group.

A stage's child that double-forks and calls setsid leaves the attempt's process group, and when its parent exits
it would be re-parented to PID 1 (docker-init on Colab): a killpg and a tree walk no longer reach it. Two nets:

- The daemon is a child subreaper (PR_SET_CHILD_SUBREAPER: Linux 3.4+, unprivileged, works in a container's pid
  namespace and under systemd): orphans of its subtree are re-parented to the daemon itself. Its children that it
  did not spawn are such orphans ("adopted"): killed at stop, reaped when they die.
- Every process it starts inherits ``F5GUARD_SUPERVISOR=<pid>-<start ticks>`` of its daemon, so the next daemon
  of the work dir finds what a killed one left, and a process that escaped the subtree keeping its environment.

cgroups would be exact, but Colab's container sees a cgroup tree it cannot write, and under systemd the unit's
cgroup is systemd's (KillMode=control-group already kills it all; sub-cgroups need Delegate=yes).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import threading
import time

import psutil

from f5guard.machine import process_start_ticks

MARKER_ENV = "F5GUARD_SUPERVISOR"  # <pid>-<start ticks> of the daemon that started the process (or its parent)
ATTEMPT_ENV = "F5GUARD_ATTEMPT"  # one attempt's token: its leftovers die with it, not only at stop
_PR_SET_CHILD_SUBREAPER = 36
_spawned: set[int] = set()  # children some Popen waits for: never reaped here (it would read exit status 0)
_lock = threading.Lock()
_subreaper = False  # only a subreaper reaps children it did not spawn (elsewhere a Popen may still want them)


def marker(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}-{process_start_ticks(pid) or 0}"


def marker_alive(value: str) -> bool:
    """Whether the daemon a marker names still runs (the same pid, started at the same tick)."""
    pid, _, ticks = value.partition("-")
    try:
        return process_start_ticks(int(pid)) == int(ticks)
    except ValueError:
        return False


def become_subreaper() -> bool:
    """Orphans of our subtree come to us instead of PID 1; False where the kernel refuses (not Linux)."""
    global _subreaper  # noqa: PLW0603 - a property of this process, set once by the daemon
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _subreaper = int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        _subreaper = False
    return _subreaper


def own(pid: int) -> None:
    """``pid`` is a child a Popen of ours waits for."""
    with _lock:
        _spawned.add(pid)


def disown(pid: int) -> None:
    with _lock:
        _spawned.discard(pid)


def _children() -> list[psutil.Process]:
    if not _subreaper:
        return []
    try:
        children: list[psutil.Process] = psutil.Process().children()
    except psutil.Error:
        return []
    return children


def _not_ours(proc: psutil.Process, session: int) -> bool:
    """Adopted: not spawned by a Popen of ours (those are registered, or share our session: subprocess.run)."""
    with _lock:
        if proc.pid in _spawned:
            return False
    try:
        return os.getsid(proc.pid) != session
    except OSError:
        return False


def adopted(attempt: str | None = None) -> list[psutil.Process]:
    """Live orphans re-parented to us; with ``attempt``, only those its environment says it started."""
    session = os.getsid(0)
    found = []
    for proc in _children():
        with contextlib.suppress(psutil.Error):
            if proc.status() == psutil.STATUS_ZOMBIE or not _not_ours(proc, session):
                continue
            if attempt is None or proc.environ().get(ATTEMPT_ENV) == attempt:
                found.append(proc)
    return found


def reap_adopted() -> int:
    """Collect adopted orphans that died (they would stay zombies); returns how many."""
    session, reaped = os.getsid(0), 0
    for proc in _children():
        with contextlib.suppress(psutil.Error, ChildProcessError, OSError):
            if proc.status() == psutil.STATUS_ZOMBIE and _not_ours(proc, session):
                reaped += int(os.waitpid(proc.pid, os.WNOHANG)[0] == proc.pid)
    return reaped


def marked(value: str) -> list[psutil.Process]:
    """Live processes whose environment carries ``F5GUARD_SUPERVISOR=value`` (a scan of /proc)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            mine = proc.pid != os.getpid() and proc.environ().get(MARKER_ENV) == value
            if mine and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def orphans_of_dead_daemons(work: str) -> list[psutil.Process]:
    """Processes a dead daemon of this work dir started (its marker names no live process): leftovers."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            env = proc.environ()
            value = env.get(MARKER_ENV)
            left = env.get("F5GUARD_WORK") == work and value and not marker_alive(value)
            if left and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def end(procs: list[psutil.Process], grace_s: float) -> list[int]:
    """SIGTERM, wait ``grace_s``, SIGKILL what is left; returns the pids that were signalled."""
    signalled = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
            signalled.append(proc.pid)
    _gone, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=2.0)
    reap_adopted()
    return signalled


def kill_now(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(_running(p) for p in procs):
        time.sleep(0.02)
    reap_adopted()


def _running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
