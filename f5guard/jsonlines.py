"""Append-only JSON lines: one torn-line rule for every f5guard file written a record at a time (stdlib only).

A line is complete only when it ends in "\\n" and parses as a JSON object. A kill mid-write leaves at most one
torn line, at the end: readers skip it (or wait for it, while its writer may still finish it), and a writer
that opens such a file ends it first, so its own first record starts on a line of its own. Record shapes and
fsync policies belong to the callers (trainer progress, the recipe's item ledger, item progress).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

Record = dict[str, Any]


def encode(record: Mapping[str, Any], *, sort_keys: bool = False, allow_nan: bool = True) -> bytes:
    """One complete line: UTF-8 JSON and the newline that makes it whole."""
    text = json.dumps(record, ensure_ascii=False, sort_keys=sort_keys, allow_nan=allow_nan)
    return (text + "\n").encode("utf-8")


def read(path: str | os.PathLike[str], offset: int = 0) -> tuple[list[Record], int]:
    """The records from byte ``offset`` on, and the offset to continue from: a last line without its newline
    is not consumed (a live writer may still finish it). A missing file raises FileNotFoundError."""
    with _open_regular(path) as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1
    return _records(data[:end]), offset + end


def _open_regular(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open for reading, refusing what is not a regular file: a FIFO would block the reader, a device never
    ends (a progress copy on home can be anything someone put there). OSError(EINVAL) for those."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return os.fdopen(fd, "rb")


def tail(path: str | os.PathLike[str], max_bytes: int) -> list[Record]:
    """The records among the last ``max_bytes`` of the file, oldest first: cheap on a long file."""
    with _open_regular(path) as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(0, size - max_bytes - 1)  # one byte more, to tell whether the window's first line is whole
        handle.seek(start)
        data = handle.read()
    if start > 0:
        cut = data.find(b"\n")
        data = data[cut + 1 :] if cut >= 0 else b""
    return _records(data)


def _records(data: bytes) -> list[Record]:
    lines = data.split(b"\n")  # not splitlines: a stray "\r" inside a foreign line ends nothing
    lines.pop()  # what follows the last newline: nothing, or a torn line
    records: list[Record] = []
    for line in lines:
        try:
            record = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError too; a torn line; a hostile nesting
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class Appender:
    """Appends records to one file, one write + flush per line (a kill leaves whole lines but the last);
    with ``fsync`` each record is also durable before ``append`` returns."""

    def __init__(
        self, path: str | os.PathLike[str], *, fsync: bool = False, sort_keys: bool = False, allow_nan: bool = True
    ) -> None:
        self.path = Path(path)
        self.fsync, self.sort_keys, self.allow_nan = fsync, sort_keys, allow_nan
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[bytes] = self.path.open("ab")
        if self._handle.tell() > 0 and not _ends_with_newline(self.path):
            self._handle.write(b"\n")  # a kill tore the last line: end it, so our first record parses

    def append(self, record: Mapping[str, Any]) -> bytes:
        """Append ``record`` as one line; returns the line written."""
        line = encode(record, sort_keys=self.sort_keys, allow_nan=self.allow_nan)
        self._handle.write(line)
        self._handle.flush()
        if self.fsync:
            os.fsync(self._handle.fileno())
        return line

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
