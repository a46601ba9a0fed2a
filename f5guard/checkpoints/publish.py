"""Publishing one checkpoint on home: temp copy (digested, read back) -> verify -> lease check -> rename -> manifest ->
retention. The one place that decides how a checkpoint becomes durable; ``sync`` decides when.

Home (Drive) is slow, eventually consistent and can vanish mid-write, so every checkpoint goes to a temp name,
is digested while copied, each chunk read back from home and compared with the source's, fsynced, read again
as a checkpoint on home, renamed to a versioned name that is never rewritten,
and only then gets its manifest (names and manifest: ``durable.py``). Older durable checkpoints are deleted
only once a successor is *in the cloud* on the store's evidence (``uploads.py``; on a plain disk, once it has
been durable ``retention_delay_s``), never the newest one in the cloud, and never one that holds more training
progress than its successor. The lease is checked before every write to home (and every FENCE_EVERY_S during a
copy).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from f5guard.checkpoints import finite
from f5guard.checkpoints.copying import CopyMismatch, ReadError, copy_fd
from f5guard.checkpoints.durable import (
    NAME,
    TEMP,
    DurableCheckpoint,
    Log,
    durable_name,
    list_durable,
    upload_temp,
    write_manifest,
)
from f5guard.checkpoints.inspect import CheckpointInfo, CheckpointInvalid, inspect_checkpoint
from f5guard.checkpoints.uploads import Uploads
from f5guard.cloud.evidence import LocalStore, Store
from f5guard.fsutil import make_dirs
from f5guard.machine import boot_id, hostname

SPACE_MARGIN = 8 * 1024 * 1024  # the manifest plus filesystem slack on top of the checkpoint itself
FENCE_EVERY_S = 2.0  # how often a long copy re-checks the lease
CHUNK_DELAY_ENV = "F5GUARD_SYNC_CHUNK_DELAY_S"  # test-only: slows copies so a test can kill one mid-way


class Outcome(Enum):
    """How one look at the local dir ended; the sync picks its next wait from it."""

    NOTHING = "nothing"  # no local checkpoint, or home already holds the newest
    UPLOADING = "uploading"  # a newer local checkpoint waits until the previous one is in the cloud (pacing)
    DONE = "done"
    TORN = "torn"
    NO_SPACE = "no_space"
    FAILED = "failed"
    FENCED = "fenced"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Attempt:
    """How one try to publish ended; ``message`` is the error (FAILED) or the warning (NO_SPACE) for status."""

    outcome: Outcome
    message: str | None = None


class Fenced(Exception):
    """The lease check raised: this supervisor may no longer write to home."""


class _Stopped(Exception):
    """The sync is stopping: a copy in flight is abandoned (its temp removed)."""


class Publisher:
    """Makes local checkpoints durable on home for one epoch, keeping the newest ``keep`` of them."""

    def __init__(self, home: Path, *, epoch: int, keep: int, fence: Callable[[], None] | None, log: Log,
                 tag: str = "", retention_delay_s: float = 0.0,
                 may_delete: Callable[[], bool] = lambda: True, store: Store | None = None) -> None:  # fmt: skip
        if keep < 1:
            raise ValueError(f"keep must be at least 1 (home must hold a checkpoint), got {keep}")
        self.home, self.epoch, self.keep = home, epoch, keep
        self.tag = tag  # our runtime's: no other runtime ever writes a file of ours
        self.retention_delay_s = retention_delay_s
        self._may_delete = may_delete  # False for a while after this runtime was frozen (lease/hold.py)
        self._fence_fn = fence
        self._log = log
        self._delay_s = float(os.environ.get(CHUNK_DELAY_ENV) or 0)
        self.uploads = Uploads(store or LocalStore("a local disk"), boot_id=boot_id(), fence=self.fence, log=log)

    def fence(self) -> None:
        """Raise Fenced unless the lease check passes; an OSError (home unreachable for now) passes through."""
        if self._fence_fn is None:
            return
        try:
            self._fence_fn()
        except OSError:
            raise  # home unreachable for now (HomeUnreachable): retried with backoff, not a lost lease
        except Exception as err:  # any failure of the lease check: we cannot prove we still own home
            raise Fenced(str(err) or type(err).__name__) from err

    def prepare_home(self) -> list[DurableCheckpoint]:
        """Once: remove temps a killed sync left on home; trim to ``keep`` (e.g. after keep was lowered)."""
        self.fence()
        make_dirs(self.home)
        for name in os.listdir(self.home):
            if TEMP.match(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.home / name)
                self._log("sync.removed_temp", file=name)
        self.trim_due(list_durable(self.home))
        return list_durable(self.home)

    def covered(self, info: CheckpointInfo, durables: list[DurableCheckpoint]) -> bool:
        """Home already holds this much progress (e.g. the checkpoint restored from), whoever wrote it."""
        return any(d.update >= info.update for d in durables)

    def trim_due(self, durables: list[DurableCheckpoint]) -> bool:
        """Retention: a checkpoint goes once a successor is in the cloud with its record (``uploads``): Drive
        uploads files independently, and a small delete reaches the cloud long before a 5 GB upload does, so
        deleting the previous one on the local cache's word could leave the cloud with none. On a plain disk
        (the store itself) a successor must have been durable ``retention_delay_s``. True when it deleted."""
        if self.uploads.store.kind == "local":
            now = time.time()
            matured = [d for d in durables if now - d.synced_at >= self.retention_delay_s]
        else:
            matured = [d for d in durables if self.uploads.recorded(d)]
        if matured and self._may_delete():
            return self._trim(durables, max(matured, key=lambda d: d.rank))
        return False

    def publish(self, candidate: CheckpointInfo, durables: list[DurableCheckpoint], *,
                stopping: Callable[[], bool], on_copy: Callable[[CheckpointInfo], None],
                on_durable: Callable[[DurableCheckpoint, float], None]) -> Attempt:  # fmt: skip
        """Make ``candidate`` durable if home has room, then apply retention. Raises Fenced, or OSError when
        home cannot be read; the temp never survives a failure.

        ``on_copy`` is called once the copy begins, ``on_durable`` as soon as the checkpoint is durable (before
        older ones are deleted: status shows it then); ``stopping`` is polled during the copy.
        """
        make_dirs(self.home)  # someone removed the folder: make it again (never home itself: fsutil.keep_root)
        free = shutil.disk_usage(self.home).free
        need = candidate.size + SPACE_MARGIN  # the old one stays until the new one is durable: room for both
        if free < need:
            self._log("sync.no_space", file=candidate.name, update=candidate.update, free=free, need=need)
            return Attempt(Outcome.NO_SPACE, self._space_warning(free, need, durables))
        self.fence()
        on_copy(candidate)
        started = time.monotonic()
        attempt, durable = self._copy_and_publish(candidate, stopping)
        if durable is not None:
            elapsed = time.monotonic() - started
            on_durable(durable, elapsed)
            self._log("sync.done", file=durable.path.name, update=durable.update, size=durable.size,
                      seconds=round(elapsed, 3), source=durable.source_name)  # fmt: skip
            try:
                self.trim_due(list_durable(self.home))
            except OSError as err:  # the new one is durable; an old one left behind only wastes space
                self._log("sync.trim_failed", error=f"could not delete old checkpoints in {self.home}: {err}")
        return attempt

    def _space_warning(self, free: int, need: int, durables: list[DurableCheckpoint]) -> str:
        kept = f"keeping model at update {durables[-1].update}" if durables else "nothing is on home yet"
        if self.keep > 1 and len(durables) > 1:
            advice = "free space on Drive or set keep = 1"
        else:
            advice = "free space on Drive (files deleted through the mount sit in its trash until emptied)"
        return f"home has {size_words(free)} free, the checkpoint needs {size_words(need)}: {kept}; {advice}"

    def _copy_and_publish(self, candidate: CheckpointInfo,
                          stopping: Callable[[], bool]) -> tuple[Attempt, DurableCheckpoint | None]:  # fmt: skip
        """temp copy (digested, read back) -> verify on home -> rename -> manifest; no temp survives a failure."""
        final = self.home / durable_name(self.epoch, candidate.update, self.tag)
        tmp = upload_temp(final)
        published = False
        self._log("sync.start", file=candidate.name, update=candidate.update, size=candidate.size)
        try:
            copied = self._copy_verified(candidate, tmp, stopping)
            if copied is None:
                return Attempt(Outcome.TORN), None
            size, digest = copied
            now = time.time()
            stored = self.uploads.store.kind == "local"  # a plain disk is the store: in once fsynced
            durable = DurableCheckpoint(final, final.with_suffix(".json"), candidate.update, self.epoch, size,
                                        digest, now, candidate.name, cloud="confirmed" if stored else "uploading",
                                        cloud_at=now if stored else None, upload_s=0.0 if stored else None,
                                        boot_id=self.uploads.boot_id, host=hostname())  # fmt: skip
            self.fence()
            # From the rename on, a crash leaves a complete file without manifest (not durable, trimmed later):
            # nothing between the two, so that window stays as short as one small write. Both names are ours.
            os.replace(tmp, final)
            published = True
            write_manifest(durable)  # temp, fsync, rename, fsync dir: the rename above is made durable with it
        except _Stopped:
            self._log("sync.abandoned", file=candidate.name, reason="stopping")
            return Attempt(Outcome.STOPPED), None
        except ReadError as err:
            return Attempt(Outcome.FAILED, f"could not read {candidate.path} while syncing: {err}"), None
        except OSError as err:
            return Attempt(Outcome.FAILED, f"could not copy {candidate.name} to {tmp}: {err.strerror or err}"), None
        except (CheckpointInvalid, CopyMismatch) as err:
            message = f"the copy of {candidate.name} on home did not verify, retrying: {err}"
            return Attempt(Outcome.FAILED, message), None
        finally:
            if not published:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        return Attempt(Outcome.DONE), durable

    def _copy_verified(self, candidate: CheckpointInfo, tmp: Path,
                       stopping: Callable[[], bool]) -> tuple[int, str] | None:  # fmt: skip
        """(size, digest) of a complete copy at ``tmp``, read back and verified; None if the source changed."""
        fenced_at = time.monotonic()

        def check() -> None:
            nonlocal fenced_at
            if stopping():
                raise _Stopped
            if time.monotonic() - fenced_at >= FENCE_EVERY_S:
                self.fence()
                fenced_at = time.monotonic()

        try:
            src_fd = os.open(candidate.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None  # rotated away (keep_last_n_checkpoints) or being replaced: look again
        try:
            before = os.fstat(src_fd)
            size, digest = copy_fd(src_fd, tmp, check, self._delay_s)
            after = os.fstat(src_fd)
        finally:
            os.close(src_fd)
        try:
            now = os.stat(candidate.path)
        except FileNotFoundError:
            return None
        # torch.save rewrites model_last.pt in place (same inode): any change means the copy may be torn
        if size != before.st_size or not _same(before, after) or not _same(before, now):
            return None
        if inspect_checkpoint(tmp, kind="last").update != candidate.update:
            return None  # rewritten within one mtime tick: the copy holds another save
        weights = finite.check(candidate.path)  # read before the copy (the sync's choice): remembered, instant
        if weights.key != finite.stat_key(candidate.path, before):
            return None  # the version judged is not the one copied: look again
        if weights.reason is not None:
            raise CheckpointInvalid(f"{weights.reason}: not published")
        return size, digest

    # -- retention -------------------------------------------------------------------------------------------
    def _trim(self, durables: list[DurableCheckpoint], newest: DurableCheckpoint) -> bool:
        """Delete what ``keep`` does not cover among those older than ``newest`` (file first, then manifest).

        Never one with more progress than ``newest``: after a takeover that restarted from an older point,
        the old epoch's further-trained checkpoint stays until this run has passed it.
        """
        older = [d for d in durables if d.rank < newest.rank]
        doomed = older[: max(0, len(older) - (self.keep - 1))]
        for d in doomed:
            self._delete(d.path, d.manifest)
        known = {p.name for d in durables for p in (d.path, d.manifest)}
        halves = 0
        for name in os.listdir(self.home):  # half pairs: a file whose manifest never came, or the reverse
            match = NAME.match(name)
            if match is None or name in known:
                continue
            if int(match[2]) < newest.update:  # never one that may hold as much progress (still arriving)
                self._delete(self.home / name)
                halves += 1
        return bool(doomed) or halves > 0

    def _delete(self, *paths: Path) -> None:
        self.fence()
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._log("sync.deleted", file=paths[0].name)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    """Same file, same bytes as far as the kernel can tell."""
    fields = ("st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def size_words(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"
