"""Verified checkpoint sync from the local checkpoint dir to home, from one low-priority thread.

Home (Drive) is slow, eventually consistent and can vanish mid-write, so every checkpoint goes to a temp name,
is hashed while copied, fsynced, checked again on home, renamed to a versioned name that is never rewritten,
and only then gets its manifest (``durable.py``). Older durable checkpoints are deleted only after their
successor is durable, and never one that holds more training progress than its successor.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from f5guard.checkpoints.copying import ReadError, copy_fd, lower_io_priority
from f5guard.checkpoints.durable import (
    MANIFEST_FORMAT,
    NAME,
    TEMP,
    DurableCheckpoint,
    Log,
    durable_name,
    list_durable,
    no_log,
)
from f5guard.checkpoints.inspect import CheckpointInfo, CheckpointInvalid, inspect_checkpoint, scan_dir
from f5guard.checkpoints.watch import Watcher, watch_dir
from f5guard.fsutil import atomic_write_json, fsync_dir

SPACE_MARGIN = 8 * 1024 * 1024  # the manifest plus filesystem slack on top of the checkpoint itself
FENCE_EVERY_S = 2.0  # how often a long copy re-checks the lease
RESCAN_S = 60.0  # look now and then even without events (a missed event, a FUSE dir)
FIRST_RETRY_S = 1.0  # after a failed copy; doubles up to retry_max_s
TORN_RETRY_S = 1.0
NO_SPACE_RETRY_S = 60.0
_CHUNK_DELAY_ENV = "F5GUARD_SYNC_CHUNK_DELAY_S"  # test-only: slows copies so a test can kill one mid-way


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


# ------------------------------------------------------------------------------------------------ sync
class _Outcome(Enum):
    NOTHING = "nothing"  # no local checkpoint, or home already holds the newest
    DONE = "done"
    TORN = "torn"
    NO_SPACE = "no_space"
    FAILED = "failed"
    FENCED = "fenced"
    STOPPED = "stopped"


class _Stopped(Exception):
    """The sync is stopping: a copy in flight is abandoned (its temp removed)."""


class _Fenced(Exception):
    """The lease check raised: this supervisor may no longer write to home."""


@dataclass(frozen=True)
class SyncStatus:
    """What status shows: the newest durable checkpoint, and why a newer one is not there yet."""

    durable: DurableCheckpoint | None
    syncing: str | None  # the local file being copied now
    last_error: str | None
    warning: str | None
    attempts: int  # tries for the checkpoint now pending; 0 once it is durable
    last_sync_s: float | None  # duration of the last successful sync
    bytes_per_s: float | None
    fenced: bool = False  # the lease check failed: this sync writes nothing more


class CheckpointSync:
    """Keeps home's newest durable checkpoint up to date with the local dir, from one low-priority thread."""

    def __init__(self, local_dir: Path, home_ckpt_dir: Path, *, epoch: int, keep: int = 1,
                 fence: Callable[[], None] | None = None, polling: bool = False, retry_max_s: float = 300.0,
                 log: Log | None = None) -> None:  # fmt: skip
        if keep < 1:
            raise ValueError(f"keep must be at least 1 (home must hold a checkpoint), got {keep}")
        self.local_dir, self.home, self.epoch, self.keep = Path(local_dir), Path(home_ckpt_dir), epoch, keep
        self._fence_fn = fence
        self._polling = polling
        self._retry_max_s = retry_max_s
        self._log: Log = log or no_log
        self._delay_s = float(os.environ.get(_CHUNK_DELAY_ENV) or 0)
        self._cond = threading.Condition()  # guards the fields below; flush waits on it
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: Watcher | None = None
        self._prepared = False
        self._flushers = 0
        self._passes = 0
        self._outcome: _Outcome | None = None
        self._durables: list[DurableCheckpoint] = []
        self._syncing: str | None = None
        self._last_error: str | None = None
        self._warning: str | None = None
        self._attempts = 0
        self._torn_in_row = 0
        self._last_sync_s: float | None = None
        self._bytes_per_s: float | None = None
        self._fenced = False

    # -- public ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the watcher and the one worker thread (which first removes temps a killed sync left)."""
        if self._thread is not None:
            return
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self._watcher = watch_dir(self.local_dir, lambda _path: self.request(), polling=self._polling,
                                  on_note=self._note_fallback)  # fmt: skip
        self._log("sync.watch", kind=self._watcher.kind, path=str(self.local_dir))
        self._wake.set()
        self._thread = threading.Thread(target=self._run, name="f5guard-sync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """A checkpoint may be complete now (watcher events, the trainer's `checkpoint` progress events)."""
        self._wake.set()

    def flush(self, timeout_s: float) -> bool:
        """Make the newest valid local checkpoint durable now and wait; True if home then holds it (or newer).

        Also True when there is no local checkpoint at all (nothing to lose). Without a running worker
        (never started, or stopped) the sync runs in the calling thread.
        """
        deadline = time.monotonic() + timeout_s
        target = self._candidate()
        if target is None:
            return True
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._wait_for_worker(target, thread, deadline)
        else:
            while self._pass(in_worker=False) not in (_Outcome.FENCED, _Outcome.NO_SPACE):
                remaining = deadline - time.monotonic()
                if self._covered(target, self._durables) or remaining <= 0:
                    break
                time.sleep(min(0.5, remaining))
        with self._cond:
            return self._covered(target, self._durables)

    def stop(self) -> None:
        """Stop watching and syncing; a copy in flight is abandoned and its temp removed."""
        self._stopping.set()
        self._wake.set()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def status(self) -> SyncStatus:
        with self._cond:
            newest = self._durables[-1] if self._durables else None
            return SyncStatus(newest, self._syncing, self._last_error, self._warning, self._attempts,
                              self._last_sync_s, self._bytes_per_s, self._fenced)  # fmt: skip

    # -- the worker ------------------------------------------------------------------------------------------
    def _wait_for_worker(self, target: CheckpointInfo, thread: threading.Thread, deadline: float) -> None:
        with self._cond:
            self._flushers += 1
            passes = self._passes
        self._wake.set()
        try:
            with self._cond:
                while not self._covered(target, self._durables) and not self._fenced and thread.is_alive():
                    if self._passes > passes and self._outcome is _Outcome.NO_SPACE:
                        return  # waiting will not make room; the warning says what to do
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self._cond.wait(min(remaining, 1.0))
        finally:
            with self._cond:
                self._flushers -= 1

    def _run(self) -> None:
        self._log("sync.io_priority", note=lower_io_priority())
        delay: float | None = 0.0
        backoff = FIRST_RETRY_S
        while not self._stopping.is_set():
            self._wait(delay)
            if self._stopping.is_set():
                break
            outcome = self._pass(in_worker=True)
            if outcome is _Outcome.FENCED:
                break
            if outcome is _Outcome.FAILED:
                delay, backoff = min(backoff, self._retry_max_s), min(backoff * 2, self._retry_max_s)
                continue
            backoff = FIRST_RETRY_S
            retry = {_Outcome.TORN: TORN_RETRY_S, _Outcome.NO_SPACE: NO_SPACE_RETRY_S}.get(outcome)
            delay = None if retry is None else min(retry, self._retry_max_s)
        with self._cond:
            self._cond.notify_all()

    def _wait(self, delay: float | None) -> None:
        """Sleep until a request (or the periodic rescan); during a retry delay only a flush cuts it short."""
        deadline = None if delay is None else time.monotonic() + delay
        while not self._stopping.is_set():
            remaining = RESCAN_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return
            if not self._wake.wait(min(remaining, 0.5) if self._flushers else remaining):
                if deadline is None:
                    return
                continue
            self._wake.clear()
            if deadline is None or self._flushers:
                return

    def _pass(self, *, in_worker: bool) -> _Outcome:
        """One look: sync the newest local checkpoint if home lacks it. Never raises."""
        try:
            if not self._prepared:
                self._prepare()
            outcome = self._sync_newest(in_worker)
        except _Fenced as err:
            outcome = _Outcome.FENCED
            error = f"stopped syncing to {self.home}: the lease check failed ({err})"
            self._set(fenced=True, last_error=error)
            self._log("sync.fenced", error=str(err))
        except OSError as err:  # listing home, free space, mkdir: a Drive that is gone for a moment
            outcome = self._failed(f"could not read {self.home} while syncing: {err.strerror or err}")
        with self._cond:
            self._passes += 1
            self._outcome = outcome
            self._cond.notify_all()
        return outcome

    def _note_fallback(self, note: str) -> None:
        self._log("sync.watch_fallback", note=note)

    def _set(self, **fields: Any) -> None:
        with self._cond:
            for name, value in fields.items():
                setattr(self, f"_{name}", value)

    def _fence(self) -> None:
        if self._fence_fn is None:
            return
        try:
            self._fence_fn()
        except OSError:
            raise  # home unreachable for now (HomeUnreachable): retried with backoff, not a lost lease
        except Exception as err:  # any failure of the lease check: we cannot prove we still own home
            raise _Fenced(str(err) or type(err).__name__) from err

    def _prepare(self) -> None:
        """Once: remove temps a killed sync left on home; trim to ``keep`` (e.g. after keep was lowered)."""
        self._fence()
        self.home.mkdir(parents=True, exist_ok=True)
        for name in os.listdir(self.home):
            if TEMP.match(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.home / name)
                self._log("sync.removed_temp", file=name)
        if durables := list_durable(self.home):
            self._trim(durables, durables[-1])
        self._set(durables=list_durable(self.home))
        self._prepared = True

    def _candidate(self) -> CheckpointInfo | None:
        """The newest valid local training checkpoint; numbered files win ties (they are never rewritten)."""
        valid = scan_dir(self.local_dir).valid
        training = [c for c in valid if c.kind != "pretrained" and c.path.suffix == ".pt"]
        return max(training, key=lambda c: (c.update, c.kind == "numbered", c.name), default=None)

    def _covered(self, info: CheckpointInfo, durables: list[DurableCheckpoint]) -> bool:
        """Home already holds this update (e.g. the one restored from), or something at least as new."""
        mine = (self.epoch, info.update)
        return any(d.update == info.update or (d.epoch, d.update) >= mine for d in durables)

    def _sync_newest(self, in_worker: bool) -> _Outcome:
        candidate = self._candidate()
        durables = list_durable(self.home)
        self._set(durables=durables)
        if candidate is None or self._covered(candidate, durables):
            self._set(attempts=0, torn_in_row=0)
            return _Outcome.NOTHING
        free = shutil.disk_usage(self.home).free
        need = candidate.size + SPACE_MARGIN  # the old one stays until the new one is durable: room for both
        if free < need:
            self._set(warning=self._space_warning(free, need, durables))
            self._log("sync.no_space", file=candidate.name, update=candidate.update, free=free, need=need)
            return _Outcome.NO_SPACE
        self._fence()
        with self._cond:
            self._syncing = candidate.name
            self._attempts += 1
        try:
            return self._copy_and_publish(candidate, in_worker)
        finally:
            self._set(syncing=None)

    def _space_warning(self, free: int, need: int, durables: list[DurableCheckpoint]) -> str:
        kept = f"keeping model at update {durables[-1].update}" if durables else "nothing is on home yet"
        if self.keep > 1 and len(durables) > 1:
            advice = "free space on Drive or set keep = 1"
        else:
            advice = "free space on Drive (files deleted through the mount sit in its trash until emptied)"
        return f"home has {_size(free)} free, the checkpoint needs {_size(need)}: {kept}; {advice}"

    def _copy_and_publish(self, candidate: CheckpointInfo, in_worker: bool) -> _Outcome:
        """temp copy (hashed) -> verify on home -> rename -> manifest; the temp never survives a failure."""
        final = self.home / durable_name(self.epoch, candidate.update)
        tmp = self.home / f".{final.name}.tmp-{os.getpid()}"
        started = time.monotonic()
        published = False
        self._log("sync.start", file=candidate.name, update=candidate.update, size=candidate.size)
        try:
            copied = self._copy_verified(candidate, tmp, in_worker)
            if copied is None:
                return self._torn(candidate)
            size, sha = copied
            self._fence()
            os.replace(tmp, final)  # from here a crash leaves a complete file without manifest: not durable
            published = True
            fsync_dir(self.home)
            self._fence()
            durable = DurableCheckpoint(final, final.with_suffix(".json"), candidate.update, self.epoch, size,
                                        sha, time.time(), candidate.name)  # fmt: skip
            atomic_write_json(durable.manifest, {
                "format": MANIFEST_FORMAT, "file": final.name, "update": durable.update,
                "epoch": durable.epoch, "size": size, "sha256": sha, "synced_at": durable.synced_at,
                "source_name": candidate.name, "host": socket.gethostname()})  # fmt: skip
        except _Stopped:
            self._log("sync.abandoned", file=candidate.name, reason="stopping")
            return _Outcome.STOPPED
        except ReadError as err:
            return self._failed(f"could not read {candidate.path} while syncing: {err}")
        except OSError as err:
            return self._failed(f"could not copy {candidate.name} to {tmp}: {err.strerror or err}")
        except CheckpointInvalid as err:
            return self._failed(f"the copy of {candidate.name} on home did not verify, retrying: {err}")
        finally:
            if not published:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self._succeeded(durable, time.monotonic() - started)
        return _Outcome.DONE

    def _copy_verified(self, candidate: CheckpointInfo, tmp: Path, in_worker: bool) -> tuple[int, str] | None:
        """(size, sha256) of a complete, verified copy at ``tmp``; None if the source changed meanwhile."""
        fenced_at = time.monotonic()

        def check() -> None:
            nonlocal fenced_at
            if in_worker and self._stopping.is_set():
                raise _Stopped
            if time.monotonic() - fenced_at >= FENCE_EVERY_S:
                self._fence()
                fenced_at = time.monotonic()

        try:
            src_fd = os.open(candidate.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None  # rotated away (keep_last_n_checkpoints) or being replaced: look again
        try:
            before = os.fstat(src_fd)
            size, sha = copy_fd(src_fd, tmp, check, self._delay_s)
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
        return size, sha

    def _succeeded(self, durable: DurableCheckpoint, elapsed: float) -> None:
        rate = durable.size / elapsed if elapsed > 0 else None
        self._set(last_error=None, warning=None, attempts=0, torn_in_row=0, last_sync_s=elapsed,
                  bytes_per_s=rate)  # fmt: skip
        self._log("sync.done", file=durable.path.name, update=durable.update, size=durable.size,
                  seconds=round(elapsed, 3), source=durable.source_name)  # fmt: skip
        try:
            self._trim(list_durable(self.home), durable)
        except OSError as err:  # the new one is durable; an old one left behind only wastes space
            self._log("sync.trim_failed", error=f"could not delete old checkpoints in {self.home}: {err}")
        self._set(durables=list_durable(self.home))

    def _torn(self, candidate: CheckpointInfo) -> _Outcome:
        with self._cond:
            self._torn_in_row += 1
            torn = self._torn_in_row
            if torn >= 3:
                self._warning = (f"{candidate.name} was rewritten during each of the last {torn} copies "
                                 "to home; a numbered checkpoint (save_per_updates) is never rewritten "
                                 "and syncs cleanly")  # fmt: skip
        self._log("sync.torn", file=candidate.name, update=candidate.update, in_a_row=torn)
        return _Outcome.TORN

    def _failed(self, message: str) -> _Outcome:
        self._set(last_error=message)
        self._log("sync.error", error=message)
        return _Outcome.FAILED

    def _trim(self, durables: list[DurableCheckpoint], newest: DurableCheckpoint) -> None:
        """Delete what ``keep`` does not cover among those older than ``newest`` (file first, then manifest).

        Never one with more progress than ``newest``: after a takeover that restarted from an older point,
        the old epoch's further-trained checkpoint stays until this run has passed it.
        """
        key = (newest.epoch, newest.update)
        older = [d for d in durables if (d.epoch, d.update) < key]
        for d in older[: max(0, len(older) - (self.keep - 1))]:
            if d.update <= newest.update:
                self._delete(d.path, d.manifest)
        known = {p.name for d in durables for p in (d.path, d.manifest)}
        for name in os.listdir(self.home):  # half pairs: a file whose manifest never came, or the reverse
            match = NAME.match(name)
            if match is None or name in known:
                continue
            epoch, update = int(match[1]), int(match[2])
            if (epoch, update) < key and update <= newest.update:
                self._delete(self.home / name)

    def _delete(self, *paths: Path) -> None:
        self._fence()
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._log("sync.deleted", file=paths[0].name)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    """Same file, same bytes as far as the kernel can tell."""
    fields = ("st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")
    return all(getattr(a, f) == getattr(b, f) for f in fields)
