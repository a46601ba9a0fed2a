"""Hear the voice while it trains: every ``sample_every`` updates, ``sample_text`` is spoken in the run's own
voice from the newest durable checkpoint, by a short ``python -m f5guard.trainer.sample`` process, into
``{home}/runs/<run>/samples/u<update>.wav`` with ``u<update>.json`` beside it.

Torch-free (the daemon never imports torch). Made like the inference copy (exporter.py): one at a time, at idle
CPU priority (nice 10) with one thread, never while an export runs; a failure is a warning in status and the
log, never a reason to stop training. Samples are kept: they are small, and the series is the point.
"""

from __future__ import annotations

import contextlib
import json
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
from f5guard.state import SampleNote

_NAME = re.compile(r"^u(\d+)\.wav$")
_TEMP = re.compile(r"^\.u\d+\.wav\..*\.tmp$")  # fsutil.publishing's temp of a killed sample
STOP_WAIT_S = 10.0


def sample_name(update: int) -> str:
    return f"u{update}.wav"


@dataclass(frozen=True)
class Sample:
    path: Path
    update: int
    seconds: float | None  # how long it took to make, from its .json note


def read_sample(path: Path, update: int) -> Sample:
    seconds: float | None = None
    with contextlib.suppress(OSError, ValueError, TypeError):
        note = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        seconds = float(note["seconds"]) if isinstance(note, dict) and "seconds" in note else None
    return Sample(path, update, seconds)


def newest_sample(out_dir: Path) -> Sample | None:
    """The newest finished sample in ``out_dir`` (temps are hidden names and never match)."""
    best: tuple[int, Path] | None = None
    with contextlib.suppress(OSError):
        for entry in os.scandir(out_dir):
            match = _NAME.match(entry.name)
            if match and (best is None or int(match[1]) > best[0]):
                best = (int(match[1]), Path(entry.path))
    return read_sample(best[1], best[0]) if best else None


@dataclass(frozen=True)
class SampleJob:
    """What every sample of one run is made with: the run's preset, vocab and dataset, and what to say."""

    model: str
    vocab: Path
    dataset: Path
    text: str
    vocoder: str  # a local vocos dir; "" = F5-TTS's download of charactr/vocos-mel-24khz


class Sampler:
    """One sample at a time; ``poll`` from the control loop starts and reaps it."""

    def __init__(
        self, out_dir: Path, every: int, job: SampleJob, log_path: Path, *, log: Log, python: StackPython | None = None
    ) -> None:
        """``python``: the stack python (None: this interpreter), which imports torch and f5_tts for the sample."""
        self.out_dir, self.every, self.job, self.log_path = out_dir, every, job, log_path
        self.stack = python
        self.python = python.path if python is not None else sys.executable
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending: DurableCheckpoint | None = None
        self._started = 0.0
        self.last = newest_sample(out_dir)
        self.error: str | None = None
        self._failed_update: int | None = None  # not retried until a newer checkpoint is durable
        with contextlib.suppress(OSError):
            for entry in os.scandir(out_dir):
                if _TEMP.match(entry.name):
                    os.unlink(entry.path)

    @property
    def running(self) -> bool:
        return self._proc is not None

    def due(self, durable: DurableCheckpoint | None, final: bool = False) -> bool:
        if durable is None or self.every <= 0 or durable.update == self._failed_update:
            return False
        done = self.last.update if self.last else None
        if final:
            return done != durable.update
        if done is None or durable.update < done:  # none yet, or a training started again (a new vocab)
            return durable.update >= self.every
        return durable.update - done >= self.every

    def poll(
        self, durable: DurableCheckpoint | None, *, busy: bool = False, source: Path | None = None, final: bool = False
    ) -> None:
        """Reap a finished sample; start the next when due and nothing else heavy runs (``busy``: an export).
        ``source``: the inference copy of ``durable``'s update when there is one (0.7 GB to read, not 5).

        Never raises OSError: home may be unreachable for a while (Drive), and a sample is not worth the daemon.
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
        """Wait for the sample in flight; False when it is still running."""
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
        """The end of training: let a sample in flight end, then speak with the final checkpoint if it is newer."""
        deadline = time.monotonic() + timeout
        if not self.wait(timeout):
            return False
        self.poll(durable, source=source, final=True)
        return self.wait(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """SIGTERM a sample in flight (it removes its temp file) and reap it."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.terminate()
        try:
            self._proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = self._pending = None
        self._log("sample.stopped")

    def public(self) -> SampleNote:
        """What status shows."""
        last = self.last
        return SampleNote(
            update=last.update if last else None,
            path=str(last.path) if last else None,
            seconds=last.seconds if last else None,
            running=self._pending.update if self._proc is not None and self._pending else None,
            error=self.error,
        )

    # ------------------------------------------------------------------------------------------------------
    def _start(self, durable: DurableCheckpoint, source: Path | None) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / sample_name(durable.update)
        read = source if source is not None else durable.path
        try:
            # Opened here and inherited: retention may delete the checkpoint once a newer one is durable.
            fd = os.open(read, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            self._failed_update = durable.update
            self.error = f"update {durable.update}: cannot open {read.name}: {err.strerror or err}"
            self._log("sample.failed", update=durable.update, error=self.error)
            return
        job = self.job
        argv = [
            self.python, "-m", "f5guard.trainer.sample", f"/proc/self/fd/{fd}", str(out), "--label", read.name,
            "--model", job.model, "--vocab", str(job.vocab), "--dataset", str(job.dataset), f"--text={job.text}",
            f"--vocoder={job.vocoder}",
        ]  # fmt: skip
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
        finally:
            os.close(fd)
        self._pending, self._started = durable, time.monotonic()
        self._log("sample.start", update=durable.update, source=read.name)

    def _env(self) -> dict[str, str]:
        if self.stack is not None and self.stack.pythonpath is not None:
            ensure_pythonpath(self.stack.pythonpath)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", PARENT_ENV: str(os.getpid())}
        return stack_env(env, self.stack)

    def _io_error(self, err: OSError) -> None:
        self.error = f"{err.strerror or err} ({getattr(err, 'filename', None) or self.out_dir})"
        self._log("sample.error", error=self.error)

    def _finish(self, code: int) -> None:
        pending, self._proc, self._pending = self._pending, None, None
        if pending is None:
            return
        out = self.out_dir / sample_name(pending.update)
        if code == 0 and out.exists():
            self.last = read_sample(out, pending.update)
            self.error = self._failed_update = None
            self._log("sample.done", update=pending.update, seconds=round(time.monotonic() - self._started, 2))
            return
        self._failed_update = pending.update
        self.error = f"update {pending.update}: {self._last_line() or f'exit {code}'}"
        self._log("sample.failed", update=pending.update, code=code, error=self.error)

    def _last_line(self) -> str:
        with contextlib.suppress(OSError):
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
            return lines[-1][-300:] if lines else ""
        return ""
