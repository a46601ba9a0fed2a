"""A stage's output log: timestamped lines, size-based rotation, the last lines kept for status.

The daemon pumps each child's merged stdout/stderr through this, so rotation works without the child's help
and a failure can quote the last lines. tqdm redraws (``\\r``) are thinned to one line per few seconds. A line
longer than LINE_MOST is cut (a stage printing hundreds of MB without a newline would otherwise make every chunk
re-join and re-split the whole partial line, and write one line far past ``max_bytes``); escape sequences and
control characters never reach the file (textsafe.py). Writing never raises: a full disk is noted in ``error``.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import logging.handlers
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from f5guard.fsutil import make_dirs
from f5guard.redact import Redactor
from f5guard.stages.textsafe import printable

LAST_LINES = 30
LINE_MOST = 64 * 1024  # bytes of one line that are logged; the rest is counted
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
        self.error: str | None = None  # the first write that failed (a full disk): said by whoever reads it
        self._handler = _Handler(self, path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._redactor = redactor
        self._on_line = on_line
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._dropped = 0  # bytes of the pending line past LINE_MOST
        self._last_redraw = 0.0
        self._held_redraw: str | None = None
        self.last_lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES)

    def note(self, text: str) -> None:
        """A line from f5guard itself (attempt started, exited), marked so it stands out."""
        self._emit(f"[f5guard] {text}")

    def block(self, lines: list[str]) -> None:
        """Lines from f5guard written in one piece (a process's stack dump): no output of the stage between."""
        with self._lock:
            for text in lines:
                self._emit_locked(f"[f5guard] {text}")

    def feed(self, chunk: bytes) -> None:
        """Consume raw output; complete lines are written, a partial one waits for its end. Only the new chunk
        is searched: the work per chunk is bounded by its size and LINE_MOST, whatever the line's length."""
        with self._lock:
            *complete, rest = chunk.replace(b"\r\n", b"\n").split(b"\n")
            for piece in complete:
                self._extend(piece)
                self._line_locked(self._take(mark=True))
            # A tqdm bar never sends "\n" until its epoch ends: handle its "\r" redraws as they come.
            if b"\r" in rest:
                head, _, rest = rest.rpartition(b"\r")
                self._extend(head)
                for raw in self._take(mark=False).split(b"\r"):
                    self._redraw_locked(raw.decode("utf-8", "replace"))
            self._extend(rest)

    def _extend(self, piece: bytes) -> None:
        room = max(0, LINE_MOST - len(self._pending))
        self._pending += piece[:room]
        self._dropped += max(0, len(piece) - room)

    def _take(self, *, mark: bool) -> bytes:
        raw, dropped = bytes(self._pending), self._dropped
        self._pending, self._dropped = bytearray(), 0
        if dropped and mark:
            raw += f" [f5guard: {dropped} more bytes of this line not logged]".encode()
        return raw

    def end_of_output(self) -> None:
        """The writer is gone: its unfinished last line is a line, and a held redraw is written."""
        with self._lock:
            if self._pending or self._dropped:
                self._line_locked(self._take(mark=True))
            self._flush_redraw_locked()

    def close(self) -> None:
        self.end_of_output()
        try:
            self._handler.close()
        except OSError as err:  # the last flush on a full disk: noted, never the daemon's death
            self.failed(err)

    def failed(self, err: BaseException | None) -> None:
        """A write of this log failed (the handler's error hook, or close)."""
        if self.error is None:
            cause = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            self.error = f"cannot write the stage log {self.path}: {cause}"

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
        text = printable(self._redactor.text(text.rstrip()))
        self.last_lines.append(text)
        record = logging.LogRecord("stage", logging.INFO, "", 0, f"{timestamp()} {text}", None, None)
        self._handler.emit(record)


class _Handler(logging.handlers.RotatingFileHandler):
    """A rotating file whose write errors go to its StageLog instead of a traceback on the daemon's stderr."""

    def __init__(self, owner: StageLog, path: Path, **kwargs: Any) -> None:
        self._owner = owner
        super().__init__(path, **kwargs)

    def handleError(self, record: logging.LogRecord) -> None:
        self._owner.failed(sys.exc_info()[1])
