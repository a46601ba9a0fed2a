"""Training progress as JSON lines: the trainer appends, the daemon reads; no stdout scraping (torch-free).

Every line is one JSON object with ``event`` (start | update | checkpoint | resume_check | exit), ``t`` (Unix
time) and ``pid``; ``f5guard.jsonlines`` keeps the lines whole. No fsync: a lost last update costs nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from f5guard import jsonlines


class ProgressWriter:
    """Append events to progress_path, one write + flush per line so a SIGKILL leaves whole lines.

    ``write=False``: a rank other than the main one of a group (trainer/group.py) runs the same hooks, but only
    the main rank reports, so the file holds one training's events, not N interleaved copies.
    """

    def __init__(self, path: str | os.PathLike[str], *, write: bool = True) -> None:
        # NaN is not JSON: hooks send non-finite values as text
        self._lines = jsonlines.Appender(path, allow_nan=False) if write else None
        self.path = Path(path)
        self.pid = os.getpid()

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"event": event, "t": round(time.time(), 3), "pid": self.pid, **fields}
        if self._lines is not None:
            self._lines.append(record)
        return record

    def close(self) -> None:
        if self._lines is not None:
            self._lines.close()


def read_events(path: str | os.PathLike[str], offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete events from byte ``offset`` on, and the offset to continue from (a partial line waits)."""
    records, offset = jsonlines.read(path, offset)
    return [r for r in records if "event" in r], offset
