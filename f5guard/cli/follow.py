"""Read and follow the daemon's JSON log and the stage logs: the engine behind ``f5guard tail``.

A follower remembers its file's inode and offset; when the inode changes (rotation) it drains the old file
first, and when the size drops below its offset (truncation) it starts over, so ``tail -f`` survives rotation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from f5guard.layout import DAEMON_LOG, WorkLayout
from f5guard.stages.stagelog import split_stamp

_BLOCK = 64 * 1024


@dataclass(frozen=True)
class Entry:
    """One line from any log, with what is needed to merge and filter."""

    timestamp: str
    run: str | None
    stage: str | None
    text: str
    event: dict[str, Any] | None  # the parsed daemon event; None for a stage output line

    def as_json(self) -> dict[str, Any]:
        if self.event is not None:
            return {"source": "daemon", **self.event}
        return {"source": "stage", "timestamp": self.timestamp, "run": self.run, "stage": self.stage, "line": self.text}


@dataclass(frozen=True)
class Source:
    path: Path
    run: str | None = None  # None: the daemon log
    stage: str | None = None

    def parse(self, line: str) -> Entry | None:
        if not line.strip():
            return None
        if self.run is None:
            try:
                event = json.loads(line)
            except ValueError:
                return Entry("", None, None, line, {"event": line})
            if not isinstance(event, dict):
                return None
            return Entry(
                str(event.get("timestamp", "")),
                event.get("run"),
                event.get("stage"),
                str(event.get("event", "")),
                event,
            )
        stamp, text = split_stamp(line)
        return Entry(stamp or "", self.run, self.stage, text, None)


def find_sources(work: WorkLayout, run: str | None = None, stage: str | None = None) -> list[Source]:
    """The daemon log plus every stage log matching the filters."""
    sources = [Source(work.daemon_log)]
    for run_name, stage_name, log in work.stage_logs():
        if (run is None or run_name == run) and (stage is None or stage_name == stage):
            sources.append(Source(log, run_name, stage_name))
    return sources


def wanted(entry: Entry, run: str | None, stage: str | None) -> bool:
    if entry.event is not None and (run or stage):
        return (run is None or entry.run == run) and (stage is None or entry.stage == stage)
    return True


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of ``path`` and, when it has fewer, of its rotated predecessor ``path.1``."""
    lines = _tail_file(path, count)
    if len(lines) < count:
        lines = _tail_file(path.with_name(path.name + ".1"), count - len(lines)) + lines
    return lines


def _tail_file(path: Path, count: int) -> list[str]:
    if count <= 0:
        return []
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = pos = handle.tell()
            data = b""
            while pos > 0 and data.count(b"\n") <= count:
                pos = max(0, pos - _BLOCK)
                handle.seek(pos)
                data = handle.read(end - pos)
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-count:]


class Follower:
    """Yields complete new lines of one file across rotation and truncation."""

    def __init__(self, path: Path, *, from_end: bool = True) -> None:
        self.path = path
        self._handle: Any = None
        self._inode: int | None = None
        self._partial = b""
        self._open(seek_end=from_end)

    def _open(self, *, seek_end: bool) -> None:
        try:
            handle = self.path.open("rb")
        except OSError:
            self._handle, self._inode = None, None
            return
        if seek_end:
            handle.seek(0, os.SEEK_END)
        self._handle, self._inode, self._partial = handle, os.fstat(handle.fileno()).st_ino, b""

    def poll(self) -> list[str]:
        lines: list[str] = []
        if self._handle is None:
            self._open(seek_end=False)  # created after we started: read it from its beginning
            if self._handle is None:
                return lines
        lines += self._drain()
        try:
            st = self.path.stat()
        except OSError:
            return lines
        if st.st_ino != self._inode:
            self._handle.close()  # rotated: the old file was drained above
            self._open(seek_end=False)
            lines += self._drain()
        elif st.st_size < self._handle.tell():
            self._handle.seek(0)  # truncated in place
            self._partial = b""
            lines += self._drain()
        return lines

    def _drain(self) -> list[str]:
        data = self._partial + self._handle.read()
        *complete, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def merged_tail(sources: list[Source], count: int, run: str | None, stage: str | None) -> list[Entry]:
    entries = [
        e
        for src in sources
        for line in last_lines(src.path, count * 4 if src.run is None else count)
        if (e := src.parse(line)) is not None and wanted(e, run, stage)
    ]
    entries.sort(key=lambda e: e.timestamp)  # stable: lines of one file keep their order
    return entries[-count:] if count else []


def iter_new(followers: dict[Path, tuple[Source, Follower]], run: str | None, stage: str | None) -> Iterator[Entry]:
    batch: list[Entry] = []
    for source, follower in followers.values():
        batch += [e for line in follower.poll() if (e := source.parse(line)) is not None and wanted(e, run, stage)]
    batch.sort(key=lambda e: e.timestamp)
    yield from batch


__all__ = ["DAEMON_LOG", "Entry", "Follower", "Source", "find_sources", "iter_new", "last_lines", "merged_tail"]
