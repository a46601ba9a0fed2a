"""Training progress as JSON lines: the trainer appends, the daemon reads; no stdout scraping (torch-free).

Every line is one complete JSON object with ``event`` (start | update | checkpoint | resume_check | exit),
``t`` (Unix time) and ``pid``. A reader may see a half-written last line while the trainer runs: skip it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class ProgressWriter:
    """Append events to progress_path, one write + flush per line so a SIGKILL leaves whole lines."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] = self.path.open("a", encoding="utf-8")
        if self._handle.tell() > 0 and not _ends_with_newline(self.path):
            self._handle.write("\n")  # a SIGKILL tore the last line: keep our first line whole
        self.pid = os.getpid()

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"event": event, "t": round(time.time(), 3), "pid": self.pid, **fields}
        self._handle.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
        self._handle.flush()
        return record

    def close(self) -> None:
        self._handle.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def read_events(path: str | os.PathLike[str], offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete events from byte ``offset`` on, and the offset to continue from (a partial line waits)."""
    with Path(path).open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    events: list[dict[str, Any]] = []
    consumed = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break  # still being written
        consumed += len(line)
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash mid-write: the next line is whole again
        if isinstance(record, dict) and "event" in record:
            events.append(record)
    return events, offset + consumed


def iter_events(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """All complete events in the file, oldest first."""
    events, _ = read_events(path)
    yield from events
