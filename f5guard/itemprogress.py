"""Item-level progress of a stage (clips segmented, clips transcribed): a tiny file protocol, torch-free.

The daemon puts a path in ``$F5GUARD_PROGRESS`` for every stage; a stage that works item by item appends
``{"done": N, "total": M}`` lines there (at most a few per second), and ``status`` shows done/total and an ETA.
Any program can speak it: it is JSON lines, kept whole by ``f5guard.jsonlines``; no fsync, the next line
replaces a lost one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from f5guard import jsonlines

ENV = "F5GUARD_PROGRESS"
_EVERY_S = 0.5
_TAIL_BYTES = 4096


class ItemProgress:
    """Writer side; a no-op when the stage was not started by f5guard (no $F5GUARD_PROGRESS)."""

    def __init__(self, total: int, done: int = 0, path: str | os.PathLike[str] | None = None) -> None:
        target = path if path is not None else os.environ.get(ENV)
        self.total, self.done = total, done
        self._last = 0.0
        self._lines = jsonlines.Appender(target) if target else None  # held for the stage's life
        self._write()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if time.monotonic() - self._last >= _EVERY_S or self.done >= self.total:
            self._write()

    def _write(self) -> None:
        self._last = time.monotonic()
        if self._lines is not None:
            self._lines.append({"done": self.done, "total": self.total, "t": round(time.time(), 3)})

    def close(self) -> None:
        if self._lines is not None:
            self._write()
            self._lines.close()
            self._lines = None

    def __enter__(self) -> ItemProgress:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def read_latest(path: Path) -> tuple[int, int] | None:
    """The last complete (done, total) in the file, or None."""
    try:
        records = jsonlines.tail(path, _TAIL_BYTES)
    except OSError:
        return None
    for record in reversed(records):
        try:
            return int(record["done"]), int(record["total"])
        except (ValueError, KeyError, TypeError):
            continue
    return None
