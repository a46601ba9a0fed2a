"""Keeps an inference copy of the training on home: the EMA weights in half precision, every N updates and at
the end, made from the newest durable checkpoint by a short ``python -m f5guard.trainer.export`` process.

Torch-free (the daemon never imports torch). The copy is a convenience: a failure is a warning in status and
the log, never a reason to stop training. Only the newest copy is kept; it is named by its update.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from f5guard.checkpoints.durable import DurableCheckpoint, Log
from f5guard.pdeathsig import PARENT_ENV
from f5guard.schema import StackPython
from f5guard.stages.stackpython import ensure_pythonpath, stack_env
from f5guard.state import ExportNote

_NAME = re.compile(r"^ema-fp16-u(\d{9,})\.pt$")
_TEMP = re.compile(r"^\.ema-fp16-u\d{9,}\.pt\..*\.tmp$")  # fsutil.publishing's temp of a killed export
STOP_WAIT_S = 10.0


def export_name(update: int) -> str:
    return f"ema-fp16-u{update:09d}.pt"


@dataclass(frozen=True)
class Exported:
    path: Path
    update: int
    size: int


def newest_export(out_dir: Path) -> Exported | None:
    """The newest finished copy in ``out_dir`` (temps are hidden names and never match)."""
    best: Exported | None = None
    with contextlib.suppress(OSError):
        for entry in os.scandir(out_dir):
            match = _NAME.match(entry.name)
            if match and (best is None or int(match[1]) > best.update):
                best = Exported(Path(entry.path), int(match[1]), entry.stat().st_size)
    return best


class EmaExporter:
    """One export at a time, at idle CPU and I/O priority; ``poll`` from the control loop starts and reaps it."""

    def __init__(
        self,
        out_dir: Path,
        every: int,
        log_path: Path,
        *,
        log: Log,
        python: StackPython | None = None,
    ) -> None:
        """``python``: the stack python (None: this interpreter), which imports torch for the export."""
        self.out_dir, self.every, self.log_path = out_dir, every, log_path
        self.stack = python
        self.python = python.path if python is not None else sys.executable
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending: DurableCheckpoint | None = None
        self._started = 0.0
        self.last = newest_export(out_dir)
        self.error: str | None = None
        self._failed_update: int | None = None  # not retried until a newer checkpoint is durable
        with contextlib.suppress(OSError):
            for entry in os.scandir(out_dir):
                if _TEMP.match(entry.name):
                    os.unlink(entry.path)  # ~0.7 GB left by an export killed with its daemon

    def due(self, durable: DurableCheckpoint | None, final: bool = False) -> bool:
        if durable is None or self.every <= 0 or durable.update == self._failed_update:
            return False
        done = self.last.update if self.last else None
        if final:
            return done != durable.update
        if done is None or durable.update < done:  # none yet, or a training started again (a new vocab)
            return durable.update >= self.every
        return durable.update - done >= self.every

    def poll(self, durable: DurableCheckpoint | None, final: bool = False) -> None:
        """Reap a finished export; start the next one when the durable checkpoint is far enough ahead.

        Never raises OSError: home may be unreachable for a while (Drive), and the copy is not worth the daemon.
        """
        try:
            if self._proc is not None:
                if self._proc.poll() is None:
                    return
                self._finish(self._proc.returncode)
            if self.due(durable, final):
                assert durable is not None
                self._start(durable)
        except OSError as err:
            self._io_error(err)

    def wait(self, timeout: float) -> bool:
        """Wait for the export in flight; False when it is still running."""
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

    def finish(self, durable: DurableCheckpoint | None, timeout: float) -> bool:
        """The end of training: let an export in flight end, then copy the final checkpoint if it is newer."""
        deadline = time.monotonic() + timeout
        if not self.wait(timeout):
            return False
        self.poll(durable, final=True)
        return self.wait(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """SIGTERM an export in flight (it removes its temp file) and reap it."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.terminate()
        try:
            self._proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        self._log("export.stopped")

    def public(self) -> ExportNote:
        """What status shows."""
        last = self.last
        return ExportNote(
            update=last.update if last else None,
            path=str(last.path) if last else None,
            size=last.size if last else None,
            running=self._pending.update if self._proc is not None and self._pending else None,
            error=self.error,
        )

    # ------------------------------------------------------------------------------------------------------
    def _start(self, durable: DurableCheckpoint) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / export_name(durable.update)
        try:
            # Opened here and inherited: retention may delete the file once a newer checkpoint is durable,
            # and an open file stays readable (the child maps it through /proc/self/fd).
            source = os.open(durable.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            self._failed_update = durable.update
            self.error = f"update {durable.update}: cannot open {durable.path.name}: {err.strerror or err}"
            self._log("export.failed", update=durable.update, error=self.error)
            return
        argv = [self.python, "-m", "f5guard.trainer.export", f"/proc/self/fd/{source}", str(out)]
        try:
            with self.log_path.open("ab") as log_file:
                self._proc = subprocess.Popen(
                    ["nice", "-n", "10", *argv, "--label", durable.path.name],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    start_new_session=True,
                    pass_fds=(source,),
                    env=self._env(),
                )
        finally:
            os.close(source)
        self._pending, self._started = durable, time.monotonic()
        self._log("export.start", update=durable.update, source=durable.path.name)

    def _env(self) -> dict[str, str]:
        if self.stack is not None and self.stack.pythonpath is not None:
            ensure_pythonpath(self.stack.pythonpath)
        return stack_env({**os.environ, "OMP_NUM_THREADS": "1", PARENT_ENV: str(os.getpid())}, self.stack)

    def _io_error(self, err: OSError) -> None:
        """Home unreachable (Drive) or local trouble: a warning in status, never an exception in the daemon."""
        self.error = f"{err.strerror or err} ({getattr(err, 'filename', None) or self.out_dir})"
        self._log("export.error", error=self.error)

    def _finish(self, code: int) -> None:
        pending, self._proc, self._pending = self._pending, None, None
        if pending is None:
            return
        seconds = round(time.monotonic() - self._started, 2)
        out = self.out_dir / export_name(pending.update)
        if code == 0 and out.exists():
            previous, self.last = self.last, Exported(out, pending.update, out.stat().st_size)
            self.error = self._failed_update = None
            if previous is not None and previous.path != out:
                with contextlib.suppress(OSError):
                    previous.path.unlink()  # only once its successor is complete; a failure leaves two copies
            self._log("export.done", update=pending.update, size=self.last.size, seconds=seconds)
            return
        self._failed_update = pending.update
        self.error = f"update {pending.update}: {self._last_line() or f'exit {code}'}"
        self._log("export.failed", update=pending.update, code=code, error=self.error)

    def _last_line(self) -> str:
        with contextlib.suppress(OSError):
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
            return lines[-1][-300:] if lines else ""
        return ""
