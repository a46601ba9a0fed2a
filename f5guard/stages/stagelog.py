"""A stage's output log: timestamped lines, size-based rotation, the last lines kept for status.

The daemon pumps each child's merged stdout/stderr through this, so rotation works without the child's help
and a failure can quote the last lines. tqdm redraws (``\\r``) are thinned to one line per few seconds.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import logging.handlers
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from f5guard.fsutil import make_dirs
from f5guard.redact import Redactor

LAST_LINES = 30
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # tqdm's cursor moves and colours: noise in a log file
REDRAW_EVERY_S = 5.0
LineHook = Callable[[str], None]


def timestamp() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def split_stamp(line: str) -> tuple[str | None, str]:
    """Split a stage-log line into its timestamp and text (``None`` when it carries none)."""
    head, sep, rest = line.partition(" ")
    if sep and len(head) >= 20 and head[4] == "-" and head.endswith("Z"):
        return head, rest
    return None, line


class StageLog:
    """Writes one stage's output; thread-safe, since the pump thread and the daemon both write to it."""

    def __init__(
        self, path: Path, *, max_bytes: int, backups: int, redactor: Redactor, on_line: LineHook | None = None
    ) -> None:
        make_dirs(path.parent)
        self.path = path
        self._handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._redactor = redactor
        self._on_line = on_line
        self._lock = threading.Lock()
        self._pending = b""
        self._last_redraw = 0.0
        self._held_redraw: str | None = None
        self.last_lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES)

    def note(self, text: str) -> None:
        """A line from f5guard itself (attempt started, exited), marked so it stands out."""
        self._emit(f"[f5guard] {text}")

    def feed(self, chunk: bytes) -> None:
        """Consume raw output; complete lines are written, a partial one waits for its end."""
        with self._lock:
            data = self._pending + chunk
            *complete, self._pending = data.replace(b"\r\n", b"\n").split(b"\n")
            for raw in complete:
                self._line_locked(raw)
            # A tqdm bar never sends "\n" until its epoch ends: handle its "\r" redraws as they come.
            if b"\r" in self._pending:
                *redraws, self._pending = self._pending.split(b"\r")
                for raw in redraws:
                    self._redraw_locked(raw.decode("utf-8", "replace"))

    def close(self) -> None:
        with self._lock:
            if self._pending:
                self._line_locked(self._pending)
                self._pending = b""
            self._flush_redraw_locked()
        self._handler.close()

    def _line_locked(self, raw: bytes) -> None:
        text = _ANSI.sub("", raw.decode("utf-8", "replace"))
        if "\r" in text:
            *redraws, text = text.split("\r")
            for part in redraws:
                self._redraw_locked(part)
        self._held_redraw = None
        if text.strip():
            self._emit_locked(text)

    def _redraw_locked(self, text: str) -> None:
        text = _ANSI.sub("", text)
        if not text.strip():
            return
        if self._on_line is not None:
            self._on_line(text)  # progress parsers see every redraw, the file only a few
        now = time.monotonic()
        if now - self._last_redraw >= REDRAW_EVERY_S:
            self._last_redraw = now
            self._held_redraw = None
            self._write_locked(text)
        else:
            self._held_redraw = text

    def _flush_redraw_locked(self) -> None:
        if self._held_redraw is not None:
            self._write_locked(self._held_redraw)
            self._held_redraw = None

    def _emit(self, text: str) -> None:
        with self._lock:
            self._emit_locked(text)

    def _emit_locked(self, text: str) -> None:
        if self._on_line is not None:
            self._on_line(text)
        self._write_locked(text)

    def _write_locked(self, text: str) -> None:
        text = self._redactor.text(text.rstrip())
        self.last_lines.append(text)
        record = logging.LogRecord("stage", logging.INFO, "", 0, f"{timestamp()} {text}", None, None)
        self._handler.emit(record)
