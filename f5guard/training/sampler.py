"""Hear the voice while it trains: every ``sample_every`` updates, ``sample_text`` is spoken in the run's own
voice from the newest durable checkpoint, by a short ``python -m f5guard.trainer.sample`` process, into
``{home}/runs/<run>/samples/u<update>.wav`` with ``u<update>.json`` beside it.

Torch-free (the daemon never imports torch). Made like the inference copy (exporter.py): one at a time, at idle
CPU priority (nice 10) with one thread, never while an export runs; a failure is a warning in status and the
log, never a reason to stop training. Samples are kept: they are small, and the series is the point.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

from f5guard.checkpoints.durable import Log
from f5guard.fsutil import read_json
from f5guard.schema import StackPython
from f5guard.state import SampleNote
from f5guard.training.sidejob import SideJob

_NAME = re.compile(r"^u(\d+)\.wav$")
_TEMP = re.compile(r"^\.u\d+\.wav\..*\.tmp$")  # fsutil.publishing's temp of a killed sample


def sample_name(update: int) -> str:
    return f"u{update}.wav"


@dataclass(frozen=True)
class Sample:
    path: Path
    update: int
    seconds: float | None  # how long it took to make, from its .json note


def read_sample(path: Path, update: int) -> Sample:
    seconds: float | None = None
    with contextlib.suppress(OSError, ValueError, TypeError, OverflowError):
        note = read_json(path.with_suffix(".json"))  # a regular file only: a FIFO there must not hang status
        seconds = float(note["seconds"]) if isinstance(note, dict) and "seconds" in note else None
        seconds = seconds if seconds is not None and math.isfinite(seconds) else None
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


class Sampler(SideJob[Sample]):
    """One sample every ``every`` updates and at the end (sidejob.py: one at a time, idle priority)."""

    kind = "sample"
    extra_env: ClassVar[Mapping[str, str]] = MappingProxyType({"TQDM_DISABLE": "1"})  # F5-TTS's bars: not in the log

    def __init__(self, out_dir: Path, every: int, job: SampleJob, log_path: Path, *, log: Log,
                 python: StackPython | None = None) -> None:  # fmt: skip
        """``python``: the stack python (None: this interpreter), which imports torch and f5_tts for the sample."""
        self.job = job
        super().__init__(out_dir, every, log_path, log=log, python=python, temp=_TEMP)

    def newest(self) -> Sample | None:
        return newest_sample(self.out_dir)

    def output(self, update: int) -> Path:
        return self.out_dir / sample_name(update)

    def argv(self, source: str, out: Path, label: str) -> list[str]:
        job = self.job
        return [
            self.python, "-m", "f5guard.trainer.sample", source, str(out), "--label", label,
            "--model", job.model, "--vocab", str(job.vocab), "--dataset", str(job.dataset), f"--text={job.text}",
            f"--vocoder={job.vocoder}",
        ]  # fmt: skip

    def made(self, out: Path, update: int, seconds: float) -> None:
        self.last = read_sample(out, update)
        self._log("sample.done", update=update, seconds=seconds)

    def public(self) -> SampleNote:
        """What status shows."""
        last = self.last
        return SampleNote(
            update=last.update if last else None,
            path=str(last.path) if last else None,
            seconds=last.seconds if last else None,
            running=self.running_update,
            error=self.error,
        )
