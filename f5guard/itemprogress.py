"""Item-level progress of a stage (clips segmented, clips transcribed): a tiny file protocol, torch-free.

The daemon puts a path in ``$F5GUARD_PROGRESS`` for every stage; a stage that works item by item appends
``{"done": N, "total": M}`` lines there (at most a few per second), and ``status`` shows done/total and an ETA.
Any program can speak it: it is one JSON object per line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any

ENV = "F5GUARD_PROGRESS"
_EVERY_S = 0.5
_TAIL_BYTES = 4096


class ItemProgress:
    """Writer side; a no-op when the stage was not started by f5guard (no $F5GUARD_PROGRESS)."""

    def __init__(self, total: int, done: int = 0, path: str | os.PathLike[str] | None = None) -> None:
        target = path if path is not None else os.environ.get(ENV)
        self.total, self.done = total, done
        self._last = 0.0
        self._handle: IO[str] | None = None
        if target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(target, "a", encoding="utf-8")  # noqa: SIM115 - held for the stage's life
        self._write()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if time.monotonic() - self._last >= _EVERY_S or self.done >= self.total:
            self._write()

    def _write(self) -> None:
        self._last = time.monotonic()
        if self._handle is not None:
            self._handle.write(json.dumps({"done": self.done, "total": self.total, "t": round(time.time(), 3)}) + "\n")
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._write()
            self._handle.close()
            self._handle = None

    def __enter__(self) -> ItemProgress:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def read_latest(path: Path) -> tuple[int, int] | None:
    """The last complete (done, total) in the file, or None."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - _TAIL_BYTES))
            data = handle.read()
    except OSError:
        return None
    for line in reversed(data.splitlines()):
        try:
            record = json.loads(line)
            return int(record["done"]), int(record["total"])
        except (ValueError, KeyError, TypeError):
            continue
    return None
