"""The append-only item record of a long recipe stage: what a killed run already did, so the next one skips it.

One JSON object per line, ``{"key": ..., **result}``, appended with flush + fsync per item. Reading keeps the
last record per key (a redone item simply appends again) and ignores lines that do not parse: a kill mid-write
leaves at most one torn line, at the end. Torch-free and tiny, so anything may read a stage's record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from f5guard.fsutil import atomic_write_bytes

Record = dict[str, Any]


def read_ledger(path: Path) -> dict[str, Record]:
    """Key -> its latest record; a missing file is an empty ledger, torn or foreign lines are skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    records: dict[str, Record] = {}
    for line in data.splitlines():
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue  # a torn last line (killed mid-write); its item is simply done again
        if isinstance(record, dict) and isinstance(record.get("key"), str):
            records[record["key"]] = record
    return records


def _line(key: str, result: Mapping[str, Any]) -> bytes:
    record = {"key": key, **{k: v for k, v in result.items() if k != "key"}}
    return (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


class Ledger:
    """A stage's item record: ``done`` holds what earlier runs finished, ``append`` makes one item durable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, Record] = read_ledger(path)
        self._handle: IO[bytes] | None = None

    def get(self, key: str) -> Record | None:
        return self.done.get(key)

    def append(self, key: str, result: Mapping[str, Any]) -> Record:
        """Record one finished item durably (flush + fsync) before the caller moves on."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "ab")  # noqa: SIM115 - held for the stage's life
            if self._handle.tell() > 0 and not _ends_with_newline(self.path):
                # a torn last line: end it, so this record starts on a line of its own and parses
                self._handle.write(b"\n")
        line = _line(key, result)
        self._handle.write(line)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        record: Record = json.loads(line)
        self.done[key] = record
        return record

    def compact(self, keep: Mapping[str, Record]) -> None:
        """Atomically rewrite the record with only ``keep`` (at the end of a run: items that left the input)."""
        self.close()
        atomic_write_bytes(self.path, b"".join(_line(key, record) for key, record in keep.items()))
        self.done = dict(keep)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
