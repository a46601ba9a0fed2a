"""Keeps an inference copy of the training on home: the EMA weights in half precision, every N updates and at
the end, made from the newest durable checkpoint by a short ``python -m f5guard.trainer.export`` process.

Torch-free (the daemon never imports torch). The copy is a convenience: a failure is a warning in status and
the log, never a reason to stop training. Only the newest copy is kept; it is named by its update.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from f5guard.checkpoints.durable import Log
from f5guard.schema import StackPython
from f5guard.state import ExportNote
from f5guard.training.sidejob import SideJob

_NAME = re.compile(r"^ema-fp16-u(\d{9,})\.pt$")
_TEMP = re.compile(r"^\.ema-fp16-u\d{9,}\.pt\..*\.tmp$")  # fsutil.publishing's temp of a killed export


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


class EmaExporter(SideJob[Exported]):
    """The inference copy, every ``every`` updates and at the end (sidejob.py: one at a time, idle priority)."""

    kind = "export"

    def __init__(self, out_dir: Path, every: int, log_path: Path, *, log: Log,
                 python: StackPython | None = None) -> None:  # fmt: skip
        """``python``: the stack python (None: this interpreter), which imports torch for the export."""
        super().__init__(out_dir, every, log_path, log=log, python=python, temp=_TEMP)

    def newest(self) -> Exported | None:
        return newest_export(self.out_dir)

    def output(self, update: int) -> Path:
        return self.out_dir / export_name(update)

    def argv(self, source: str, out: Path, label: str) -> list[str]:
        return [self.python, "-m", "f5guard.trainer.export", source, str(out), "--label", label]

    def made(self, out: Path, update: int, seconds: float) -> None:
        previous, self.last = self.last, Exported(out, update, out.stat().st_size)
        if previous is not None and previous.path != out:
            with contextlib.suppress(OSError):
                previous.path.unlink()  # only once its successor is complete; a failure leaves two copies
        self._log("export.done", update=update, size=self.last.size, seconds=seconds)

    def public(self) -> ExportNote:
        """What status shows."""
        last = self.last
        return ExportNote(
            update=last.update if last else None,
            path=str(last.path) if last else None,
            size=last.size if last else None,
            running=self.running_update,
            error=self.error,
        )
