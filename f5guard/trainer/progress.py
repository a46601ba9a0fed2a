"""Training progress as JSON lines: the trainer appends, the daemon reads; no stdout scraping (torch-free).

Every line is one JSON object with ``event`` (start | update | checkpoint | resume_check | exit), ``t`` (Unix
time) and ``pid``; ``f5guard.jsonlines`` keeps the lines whole. No fsync: a lost last update costs nothing.
"""

from __future__ import annotations

import os
import time
from typing import Any

from f5guard import jsonlines


class ProgressWriter:
    """Append events to progress_path, one write + flush per line so a SIGKILL leaves whole lines."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._lines = jsonlines.Appender(path, allow_nan=False)  # NaN is not JSON: hooks send non-finite values as text
        self.path = self._lines.path
        self.pid = os.getpid()

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"event": event, "t": round(time.time(), 3), "pid": self.pid, **fields}
        self._lines.append(record)
        return record

    def close(self) -> None:
        self._lines.close()


def read_events(path: str | os.PathLike[str], offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete events from byte ``offset`` on, and the offset to continue from (a partial line waits)."""
    records, offset = jsonlines.read(path, offset)
    return [r for r in records if "event" in r], offset
