"""Is a file on home in the cloud yet? One small interface, one backend per kind of home.

A Drive mount is the VM's write-back cache: a file written there uploads later, at its own pace, and dies with
the VM until it has. So "durable" means *in the cloud*, and only the store can say so:

- ``drive``: DriveFS's own per-file upload state (``drivefs``); a file it does not answer for is estimated;
- ``local``: a plain disk, or a mount that is the store itself: in as soon as it is written (and fsynced);
- ``writeback``: a FUSE or network mount that gives no evidence (rclone, gcsfuse, a Drive without the
  attributes): an *estimate*, in once its age reaches max(``delay_s``, size / upload rate), always shown so.

A bucket SDK (issue 19) is one more ``Store``: a ``kind``, a ``how`` and ``look(path)``. Backends only read.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from f5guard.cloud import drivefs


class Where(str, enum.Enum):
    CLOUD = "cloud"  # confirmed by the store, or (``estimated``) presumed
    UPLOADING = "uploading"  # only in this VM's cache so far
    ABSENT = "absent"  # no such file in this view


@dataclass(frozen=True)
class Evidence:
    """Where one file is, and on what grounds."""

    where: Where
    estimated: bool = False  # from age and size, not from the store's answer
    since: float | None = None  # uploading: when the file was written (its mtime)
    at: float | None = None  # in the cloud since (wall clock), where known: local: written; writeback: estimated
    size: int = 0
    detail: str = ""  # e.g. "user.drive.uncommitted=1", "written 40 s ago, 2.7 MB at 2.0 MB/s takes 60 s"

    @property
    def in_cloud(self) -> bool:
        return self.where is Where.CLOUD


class Store(Protocol):
    """A kind of home: says for a file on it whether it is in the cloud."""

    @property
    def kind(self) -> str: ...

    @property
    def how(self) -> str: ...  # why this kind, in words (status, doctor)

    @property
    def estimated(self) -> bool: ...  # True when "in the cloud" is never more than an estimate here

    @property
    def presumed_bytes_per_s(self) -> float | None: ...  # the upload rate an estimate presumes (None: none)

    def look(self, path: Path) -> Evidence: ...


def _stat(path: Path) -> os.stat_result | None:
    """None when the file is not there; other errors (a mount that does not answer) are the caller's."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class LocalStore:
    """A plain disk is the store itself: a file written (and fsynced, as publish does) is in."""

    how: str
    kind: str = "local"
    estimated: bool = False
    presumed_bytes_per_s: float | None = None

    def look(self, path: Path) -> Evidence:
        st = _stat(path)
        if st is None:
            return Evidence(Where.ABSENT)
        return Evidence(Where.CLOUD, at=st.st_mtime, size=st.st_size, detail="a local disk: written is stored")


@dataclass(frozen=True)
class WritebackStore:
    """No evidence from the mount: a file is presumed uploaded once it is old enough for its size."""

    how: str
    delay_s: float  # the least any file is presumed to take (lease.retention_delay_s)
    bytes_per_s: float  # the presumed upload rate ([store] upload_mb_per_s)
    kind: str = "writeback"
    estimated: bool = True
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    @property
    def presumed_bytes_per_s(self) -> float | None:
        return self.bytes_per_s

    def takes_s(self, size: int) -> float:
        return max(self.delay_s, size / self.bytes_per_s)

    def look(self, path: Path) -> Evidence:
        st = _stat(path)
        if st is None:
            return Evidence(Where.ABSENT)
        return self.judge(st.st_mtime, st.st_size, "")

    def judge(self, written: float, size: int, why: str) -> Evidence:
        takes = self.takes_s(size)
        age = self.clock() - written
        detail = (f"{why}estimated: written {age:.0f} s ago, {size / 1e6:.1f} MB at "
                  f"{self.bytes_per_s / 1e6:.1f} MB/s takes {takes:.0f} s")  # fmt: skip
        if age >= takes:
            return Evidence(Where.CLOUD, estimated=True, at=written + takes, size=size, detail=detail)
        return Evidence(Where.UPLOADING, estimated=True, since=written, size=size, detail=detail)


@dataclass(frozen=True)
class DriveStore:
    """DriveFS's answer per file; a file it says nothing about is estimated like a writeback mount's."""

    how: str
    fallback: WritebackStore
    kind: str = "drive"
    estimated: bool = False

    @property
    def presumed_bytes_per_s(self) -> float | None:
        return self.fallback.bytes_per_s

    def look(self, path: Path) -> Evidence:
        st = _stat(path)
        if st is None:
            return Evidence(Where.ABSENT)
        try:
            answer = drivefs.ask(path)
        except FileNotFoundError:
            return Evidence(Where.ABSENT)
        except OSError as err:  # the mount hiccups (Errno 107): no evidence now, so not in the cloud
            return Evidence(Where.UPLOADING, since=st.st_mtime, size=st.st_size,
                            detail=f"DriveFS did not answer: {err.strerror or err}")  # fmt: skip
        if answer is None or (answer.uncommitted is None and not answer.uploading):
            return self.fallback.judge(st.st_mtime, st.st_size, "no DriveFS upload state for this file; ")
        detail = f"{drivefs.UNCOMMITTED}={'1' if answer.uncommitted else '0'}, {drivefs.ITEM_ID}={answer.item_id}"
        if answer.in_cloud:
            return Evidence(Where.CLOUD, size=st.st_size, detail=detail)
        return Evidence(Where.UPLOADING, since=st.st_mtime, size=st.st_size, detail=detail)
