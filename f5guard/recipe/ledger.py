"""The append-only item record of a long recipe stage: what a killed run already did, so the next one skips it.

One JSON object per line, ``{"key": ..., **result}``, appended with flush + fsync per item (``f5guard.jsonlines``
keeps the lines whole). Reading keeps the last record per key (a redone item simply appends again). Torch-free
and tiny, so anything may read a stage's record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from f5guard import jsonlines
from f5guard.fsutil import atomic_write_bytes

Record = jsonlines.Record


def read_ledger(path: Path) -> dict[str, Record]:
    """Key -> its latest record; a missing file is an empty ledger, torn or foreign lines are skipped."""
    try:
        records, _ = jsonlines.read(path)
    except FileNotFoundError:
        return {}
    # a torn last line (killed mid-write) is not here: its item is simply done again
    return {r["key"]: r for r in records if isinstance(r.get("key"), str)}


def _record(key: str, result: Mapping[str, Any]) -> dict[str, Any]:
    return {"key": key, **{k: v for k, v in result.items() if k != "key"}}


class Ledger:
    """A stage's item record: ``done`` holds what earlier runs finished, ``append`` makes one item durable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, Record] = read_ledger(path)
        self._lines: jsonlines.Appender | None = (
            None  # opened by the first append: a run with nothing new writes nothing
        )

    def get(self, key: str) -> Record | None:
        return self.done.get(key)

    def append(self, key: str, result: Mapping[str, Any]) -> Record:
        """Record one finished item durably (flush + fsync) before the caller moves on."""
        if self._lines is None:
            self._lines = jsonlines.Appender(self.path, fsync=True, sort_keys=True)
        record: Record = json.loads(self._lines.append(_record(key, result)))  # as a reader will see it
        self.done[key] = record
        return record

    def compact(self, keep: Mapping[str, Record]) -> None:
        """Atomically rewrite the record with only ``keep`` (at the end of a run: items that left the input)."""
        self.close()
        lines = (jsonlines.encode(_record(key, record), sort_keys=True) for key, record in keep.items())
        atomic_write_bytes(self.path, b"".join(lines))
        self.done = dict(keep)

    def close(self) -> None:
        if self._lines is not None:
            self._lines.close()
            self._lines = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
