"""One attempt: a child in its own process group, its output pumped into a StageLog, its exit reaped at once.

A waiting thread blocks in wait() so a death is noticed in milliseconds (supervisord polls on a 1 s tick and
is fooled by a dataloader worker holding the pipe open). Stopping signals the whole group, then SIGKILLs what
is left, including descendants that escaped the group, and the orphans this attempt left re-parented to the
daemon (a double fork + setsid; lineage.py): no orphans.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

from f5guard.fsutil import make_dirs
from f5guard.pdeathsig import PARENT_ENV, die_with_parent
from f5guard.stages import lineage
from f5guard.stages.exits import ExitInfo, classify, oom_kill_count
from f5guard.stages.stagelog import StageLog

PUMP_DRAIN_S = 5.0  # how long an ended attempt's output may still flow before its exit is reported


class Attempt:
    """A running (or finished) child process group."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log: StageLog,
        on_exit: Callable[[Attempt], None],
        self_tied: bool = False,
    ) -> None:
        """``self_tied``: the child is an f5guard entry that sets its own death signal (see pdeathsig.py)."""
        self.argv = list(argv)
        self.log = log
        self._on_exit = on_exit
        self._oom_before = oom_kill_count()
        self._stop_requested = False
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        self.ended_mono: float | None = None
        self.exit: ExitInfo | None = None
        self._done = threading.Event()
        make_dirs(cwd)
        # SIGTERM when the daemon dies (even by SIGKILL): a trainer then checkpoints and exits, never orphaned.
        child_env = {**env, PARENT_ENV: str(os.getpid())} if self_tied else dict(env)
        self.token = os.urandom(6).hex()
        child_env[lineage.ATTEMPT_ENV] = self.token  # inherited by descendants: its leftovers end with it
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if self_tied else die_with_parent,  # noqa: PLW1509
        )
        self.pid = self.proc.pid
        lineage.own(self.pid)
        self.pgid = self.pid  # start_new_session: the child leads its own session and group
        self.create_time = _create_time(self.pid)
        self._pump_thread = threading.Thread(target=self._pump, name=f"pump-{self.pid}", daemon=True)
        self._pump_thread.start()
        threading.Thread(target=self._wait, name=f"wait-{self.pid}", daemon=True).start()

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    @property
    def uptime_s(self) -> float:
        return (self.ended_mono or time.monotonic()) - self.started_mono

    def _pump(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        fd = stdout.fileno()
        with contextlib.suppress(OSError):
            while chunk := os.read(fd, 65536):
                self.log.feed(chunk)
        self.log.end_of_output()  # a last line without its newline (a traceback cut short) counts too
        stdout.close()

    def _wait(self) -> None:
        returncode = self.proc.wait()
        lineage.disown(self.pid)
        self.ended_mono = time.monotonic()
        self.exit = classify(returncode, self._oom_before, oom_kill_count(), stopped=self._stop_requested)
        # Stragglers (dataloader workers) of a dead leader die with it; they would hold GPU memory and the pipe.
        _signal_group(self.pgid, signal.SIGKILL)
        # The exit is judged on the last lines: the pump must have read everything first (a CUDA OOM's
        # traceback is the last thing a trainer writes). A descendant that escaped the group may hold the pipe
        # open: then only for a while.
        self._pump_thread.join(PUMP_DRAIN_S)
        lineage.kill_now(lineage.adopted(self.token))
        self._done.set()
        self._on_exit(self)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the whole group (a trainer, its accelerate workers, its dataloader workers)."""
        _signal_group(self.pgid, sig)

    def stop(self, grace_s: float, *, leader_only: bool = False) -> ExitInfo | None:
        """SIGTERM the group (or only its leader), wait ``grace_s``, SIGKILL the group and escaped descendants.

        ``leader_only`` is systemd's KillMode=mixed: a trainer must checkpoint before its DataLoader workers die
        under it, so only the trainer is asked; whatever it leaves is killed after.
        """
        self._stop_requested = True
        descendants = _descendants(self.pid)
        escaped = lineage.adopted(self.token)  # left the group (double fork + setsid): killpg misses them
        for proc in escaped:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        if self.running:
            if leader_only:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)
            else:
                self.signal(signal.SIGTERM)
            self.wait(grace_s)
        if self.running:
            self.log.note(f"still running {grace_s:g}s after SIGTERM: SIGKILL to the process group")
            self.signal(signal.SIGKILL)
            self.wait(5.0)
        for proc in descendants + _descendants(self.pid):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        lineage.kill_now(escaped + lineage.adopted(self.token))
        return self.exit


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return children


def _create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def kill_leftover_group(pgid: int, leader_create_time: float | None) -> bool:
    """Kill a group a dead daemon left behind, if its leader is still the same process (pids get reused)."""
    try:
        leader = psutil.Process(pgid)
        if leader_create_time is not None and abs(leader.create_time() - leader_create_time) > 0.5:
            return False
    except psutil.NoSuchProcess:
        pass  # the leader is gone; members of its group may remain
    except psutil.Error:
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True
