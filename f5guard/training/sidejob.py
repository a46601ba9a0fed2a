"""What the inference copy (exporter.py) and the audio samples (sampler.py) share: a short side process made from
the newest durable checkpoint every N updates, one at a time, at idle CPU priority (nice 10, one thread), in the
stack python, reading the checkpoint through an inherited descriptor. A failure is a warning in status and the
log, never a reason to stop training, and the same update is not retried.

Torch-free (the daemon never imports torch): the side process imports it.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Generic, Protocol, TypeVar

from f5guard.checkpoints.durable import DurableCheckpoint, Log
from f5guard.fsutil import make_dirs
from f5guard.pdeathsig import PARENT_ENV
from f5guard.schema import StackPython
from f5guard.stages import lineage
from f5guard.stages.stackpython import ensure_pythonpath, stack_env

STOP_WAIT_S = 10.0


class Made(Protocol):
    """A finished output: the update it was made from."""

    @property
    def update(self) -> int: ...


MadeT = TypeVar("MadeT", bound=Made)


class SideJob(ABC, Generic[MadeT]):
    """One side process at a time; ``poll`` from the control loop starts and reaps it."""

    kind = "side"  # the log events' prefix: "export.start", "sample.failed" ...
    extra_env: ClassVar[Mapping[str, str]] = MappingProxyType({})  # beside OMP_NUM_THREADS=1

    def __init__(self, out_dir: Path, every: int, log_path: Path, *, log: Log, python: StackPython | None,
                 temp: re.Pattern[str]) -> None:  # fmt: skip
        """``python``: the stack python (None: this interpreter); ``temp``: the names a killed process leaves."""
        self.out_dir, self.every, self.log_path = out_dir, every, log_path
        self.stack = python
        self.python = python.path if python is not None else sys.executable
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending: DurableCheckpoint | None = None
        self._started = 0.0
        self.last: MadeT | None = self.newest()
        self.error: str | None = None
        self._failed_update: int | None = None  # not retried until a newer checkpoint is durable
        with contextlib.suppress(OSError):
            for entry in os.scandir(out_dir):
                if temp.match(entry.name):
                    os.unlink(entry.path)  # left by a process killed with its daemon

    # -- what each kind says -----------------------------------------------------------------------------------
    @abstractmethod
    def newest(self) -> MadeT | None:
        """The newest finished output in ``out_dir``."""

    @abstractmethod
    def output(self, update: int) -> Path:
        """Where the output made from ``update`` goes."""

    @abstractmethod
    def argv(self, source: str, out: Path, label: str) -> list[str]:
        """The side process's command line; ``source`` is the inherited descriptor's /proc path."""

    @abstractmethod
    def made(self, out: Path, update: int, seconds: float) -> None:
        """The process ended well: take ``out`` as ``self.last`` (and log it)."""

    # -- the schedule ------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None

    @property
    def running_update(self) -> int | None:
        return self._pending.update if self._proc is not None and self._pending else None

    def due(self, durable: DurableCheckpoint | None, final: bool = False) -> bool:
        if durable is None or self.every <= 0 or durable.update == self._failed_update:
            return False
        done = self.last.update if self.last else None
        if final:
            return done != durable.update
        if done is None or durable.update < done:  # none yet, or a training started again (a new vocab)
            return durable.update >= self.every
        return durable.update - done >= self.every

    def poll(self, durable: DurableCheckpoint | None, final: bool = False, *, busy: bool = False,
             source: Path | None = None) -> None:  # fmt: skip
        """Reap a finished process; start the next when due and nothing else heavy runs (``busy``). ``source``:
        a smaller file holding ``durable``'s update to read instead (the inference copy).

        Never raises OSError: home may be unreachable for a while (Drive), and this is not worth the daemon.
        """
        try:
            if self._proc is not None:
                if self._proc.poll() is None:
                    return
                self._finish(self._proc.returncode)
            if not busy and self.due(durable, final):
                assert durable is not None
                self._start(durable, source)
        except OSError as err:
            self._io_error(err)

    def wait(self, timeout: float) -> bool:
        """Wait for the process in flight; False when it is still running."""
        if self._proc is None:
            return True
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        try:
            self._finish(code)
        except OSError as err:
            self._io_error(err)
        return True

    def finish(self, durable: DurableCheckpoint | None, timeout: float, source: Path | None = None) -> bool:
        """The end of training: let the process in flight end, then make one from the final checkpoint."""
        deadline = time.monotonic() + timeout
        if not self.wait(timeout):
            return False
        self.poll(durable, final=True, source=source)
        return self.wait(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """SIGTERM the process in flight (it removes its temp file) and reap it."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.terminate()
        try:
            self._proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        lineage.disown(self._proc.pid)
        self._proc = self._pending = None
        self._log(f"{self.kind}.stopped")

    # -- one process -------------------------------------------------------------------------------------------
    def _start(self, durable: DurableCheckpoint, source: Path | None) -> None:
        make_dirs(self.out_dir)
        make_dirs(self.log_path.parent)
        read = source if source is not None else durable.path
        try:
            # Opened here and inherited: retention may delete the checkpoint once a newer one is durable, and an
            # open file stays readable (the child reads it through /proc/self/fd).
            fd = os.open(read, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            self._failed_update = durable.update
            self.error = f"update {durable.update}: cannot open {read.name}: {err.strerror or err}"
            self._log(f"{self.kind}.failed", update=durable.update, error=self.error)
            return
        argv = self.argv(f"/proc/self/fd/{fd}", self.output(durable.update), read.name)
        try:
            with self.log_path.open("ab") as log_file:
                self._proc = subprocess.Popen(
                    ["nice", "-n", "10", *argv],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    start_new_session=True,
                    pass_fds=(fd,),
                    env=self._env(),
                )
            lineage.own(self._proc.pid)  # ours to wait for: the daemon's orphan reaper leaves it alone
        finally:
            os.close(fd)
        self._pending, self._started = durable, time.monotonic()
        self._log(f"{self.kind}.start", update=durable.update, source=read.name)

    def _env(self) -> dict[str, str]:
        if self.stack is not None and self.stack.pythonpath is not None:
            ensure_pythonpath(self.stack.pythonpath)
        env = {**os.environ, "OMP_NUM_THREADS": "1", **self.extra_env, PARENT_ENV: str(os.getpid())}
        return stack_env(env, self.stack)

    def _io_error(self, err: OSError) -> None:
        """Home unreachable (Drive) or local trouble: a warning in status, never an exception in the daemon."""
        self.error = f"{err.strerror or err} ({getattr(err, 'filename', None) or self.out_dir})"
        self._log(f"{self.kind}.error", error=self.error)

    def _finish(self, code: int) -> None:
        if self._proc is not None:
            lineage.disown(self._proc.pid)
        pending, self._proc, self._pending = self._pending, None, None
        if pending is None:
            return
        out = self.output(pending.update)
        if code == 0 and out.exists():
            self.error = self._failed_update = None
            self.made(out, pending.update, round(time.monotonic() - self._started, 2))
            return
        self._failed_update = pending.update
        self.error = f"update {pending.update}: {self._last_line() or f'exit {code}'}"
        self._log(f"{self.kind}.failed", update=pending.update, code=code, error=self.error)

    def _last_line(self) -> str:
        with contextlib.suppress(OSError):
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
            return lines[-1][-300:] if lines else ""
        return ""
