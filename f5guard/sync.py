"""Verified checkpoint sync from the local checkpoint dir to home, and restore from home on a fresh runtime.

Home (Drive) is slow, eventually consistent and can vanish mid-write, so every checkpoint goes to a temp name,
is hashed while copied, fsynced, checked again on home, renamed to a versioned name that is never rewritten
(``ckpt-e{epoch}-u{update}.pt``), and only then gets its manifest: a file with a manifest is *durable*.
Older durable checkpoints are deleted only after their successor is durable, and never one that holds more
training progress than its successor. Torch-free: checkpoints are judged by ``f5guard.checkpoints``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import platform
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from f5guard.checkpoints import _TMP_MARK, LAST_NAME, CheckpointInfo, CheckpointInvalid, inspect_checkpoint, scan_dir
from f5guard.errors import F5guardError
from f5guard.fsutil import atomic_write_json, fsync_dir, read_json
from f5guard.watch import Watcher, watch_dir

Log = Callable[..., None]
MANIFEST_FORMAT = 1
CHUNK = 8 * 1024 * 1024  # large sequential I/O: few syscalls, and Drive's FUSE layer prefers big writes
SPACE_MARGIN = 8 * 1024 * 1024  # the manifest plus filesystem slack on top of the checkpoint itself
FENCE_EVERY_S = 2.0  # how often a long copy re-checks the lease
RESCAN_S = 60.0  # look at the local dir now and then even without events (missed or FUSE-less events)
FIRST_RETRY_S = 1.0  # after a failed copy; doubles up to retry_max_s
TORN_RETRY_S = 1.0
NO_SPACE_RETRY_S = 60.0
_NAME = re.compile(r"^ckpt-e(\d{4,})-u(\d{9,})\.(pt|json)$")
_TEMP = re.compile(r"^\.ckpt-e\d+-u\d+\.(pt\.tmp-\d+|json\..*\.tmp)$")  # ours, and atomic_write_json's
_CHUNK_DELAY_ENV = "F5GUARD_SYNC_CHUNK_DELAY_S"  # test-only: slows copies so a test can kill one mid-way


class RestoreFailed(F5guardError, RuntimeError):
    """A verified checkpoint could not be written to the local checkpoint dir (local disk full, ...)."""


def durable_name(epoch: int, update: int) -> str:
    return f"ckpt-e{epoch:04d}-u{update:09d}.pt"


@dataclass(frozen=True)
class DurableCheckpoint:
    """One verified checkpoint on home, as its manifest describes it."""

    path: Path
    manifest: Path
    update: int
    epoch: int
    size: int
    sha256: str
    synced_at: float
    source_name: str


def _read_manifest(manifest: Path) -> DurableCheckpoint | None:
    """The manifest's checkpoint if the manifest is well-formed and its file exists with the right size."""
    match = _NAME.match(manifest.name)
    try:
        doc = read_json(manifest)
        path = manifest.with_suffix(".pt")
        durable = DurableCheckpoint(path, manifest, int(doc["update"]), int(doc["epoch"]), int(doc["size"]),
                                    str(doc["sha256"]), float(doc["synced_at"]), str(doc["source_name"]))
        size = path.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable, half-visible (Drive) or missing file: not durable, whatever the reason
    if match is None or (int(match[1]), int(match[2])) != (durable.epoch, durable.update):
        return None
    if size != durable.size or not re.fullmatch(r"[0-9a-f]{64}", durable.sha256):
        return None
    return durable


def list_durable(home_ckpt_dir: Path) -> list[DurableCheckpoint]:
    """Valid manifests whose file exists with the right size, oldest to newest by (epoch, update)."""
    try:
        names = os.listdir(home_ckpt_dir)
    except FileNotFoundError:
        return []
    found = [_read_manifest(home_ckpt_dir / n) for n in names if n.endswith(".json") and _NAME.match(n)]
    return sorted((d for d in found if d is not None), key=lambda d: (d.epoch, d.update))


# ------------------------------------------------------------------------------------------- copying
class _Abort(Exception):
    """Raised out of a copy by its per-chunk check: the lease is gone, or the sync is stopping."""


class _ReadError(Exception):
    """The source could not be read (as opposed to the target not written)."""

    def __init__(self, err: OSError) -> None:
        super().__init__(str(err))
        self.err = err


def _drop_cache(fd: int, offset: int, length: int) -> None:
    # DONTNEED starts writeback of dirty pages and drops clean ones: a 5 GB copy must not evict the
    # trainer's page cache (dataset, code). Advisory: some filesystems ignore or refuse it.
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _copy(src_fd: int, dst: Path, *, check: Callable[[], None] | None = None, delay_s: float = 0.0) -> tuple[int, str]:
    """Copy ``src_fd`` from offset 0 into a new file ``dst``, hashing on the way; fsync. Returns (size, sha256)."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    offset = 0
    dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        while True:
            if check is not None:
                check()
            try:
                n = os.preadv(src_fd, [buf], offset)
            except OSError as err:
                raise _ReadError(err) from err
            if n == 0:
                break
            digest.update(view[:n])
            written = 0
            while written < n:
                written += os.write(dst_fd, view[written:n])
            _drop_cache(src_fd, offset, n)
            _drop_cache(dst_fd, offset, n)  # starts writeback of this chunk now, so the final fsync is short
            if offset >= 2 * CHUNK:
                _drop_cache(dst_fd, offset - 2 * CHUNK, CHUNK)  # written back by now: drop it
            offset += n
            if delay_s:
                time.sleep(delay_s)
        os.fsync(dst_fd)
        _drop_cache(dst_fd, 0, 0)
    finally:
        os.close(dst_fd)
    return offset, digest.hexdigest()


_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "riscv64": 30, "ppc64le": 273, "s390x": 282}
_IOPRIO_CLASS_BE = 2


def lower_io_priority() -> str:
    """Put the calling thread at best-effort level 7: below the trainer, yet never starved (the idle class
    can wait forever under BFQ while the trainer reads its dataset, and a graceful stop waits on the copy)."""
    nr = _SYS_IOPRIO_SET.get(platform.machine())
    if nr is None:
        return f"io priority unchanged: no ioprio_set syscall number known for {platform.machine()}"
    libc = ctypes.CDLL(None, use_errno=True)
    value = (_IOPRIO_CLASS_BE << 13) | 7
    if libc.syscall(nr, 1, threading.get_native_id(), value) != 0:  # 1 = IOPRIO_WHO_PROCESS (a thread id)
        return f"io priority unchanged: ioprio_set failed ({os.strerror(ctypes.get_errno())})"
    return "io priority of the sync thread: best-effort, level 7 (lowest)"


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def restore(home_ckpt_dir: Path, local_dir: Path, log: Log | None = None) -> DurableCheckpoint | None:
    """Copy the newest durable checkpoint that verifies to ``local_dir/model_last.pt``; older ones if it fails.

    Verified = the copy's size and sha256 match the manifest and the copy reads as a checkpoint at the
    manifest's update. None when home holds no durable checkpoint that verifies.
    Raises RestoreFailed when the local side cannot be written: falling back to an older checkpoint (or
    to none, i.e. training from scratch) because the local disk is full would throw progress away.
    """
    log = log or _no_log
    local_dir.mkdir(parents=True, exist_ok=True)
    target = local_dir / LAST_NAME
    tmp = local_dir / f".{LAST_NAME}{_TMP_MARK}{os.getpid()}"  # prepare_resume removes it after a crash
    for durable in reversed(list_durable(home_ckpt_dir)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            src_fd = os.open(durable.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            log("restore.skip", file=durable.path.name, reason=f"cannot open: {err.strerror or err}")
            continue
        try:
            size, sha = _copy(src_fd, tmp)
            reason = None
            if (size, sha) != (durable.size, durable.sha256):
                reason = f"content differs from its manifest ({size} bytes, sha256 {sha[:12]}…)"
            elif (update := inspect_checkpoint(tmp, kind="last").update) != durable.update:
                reason = f"holds update {update}, its manifest says {durable.update}"
        except _ReadError as err:
            reason = f"cannot read: {err.err.strerror or err.err}"
        except CheckpointInvalid as err:
            reason = str(err)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise RestoreFailed(f"could not restore {durable.path} to {target}: {err.strerror or err}") from err
        finally:
            os.close(src_fd)
        if reason is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            log("restore.skip", file=durable.path.name, reason=reason)
            continue
        os.replace(tmp, target)
        fsync_dir(local_dir)
        log("restore.done", file=durable.path.name, update=durable.update, epoch=durable.epoch, size=durable.size)
        return durable
    return None


def _no_log(_event: str, **_fields: Any) -> None:
    return None


# ------------------------------------------------------------------------------------------- the worker
class _Outcome(Enum):
    NOTHING = "nothing"  # no local checkpoint, or home already holds the newest
    DONE = "done"
    TORN = "torn"
    NO_SPACE = "no_space"
    FAILED = "failed"
    FENCED = "fenced"
    STOPPED = "stopped"


@dataclass(frozen=True)
class SyncStatus:
    """What status shows: the newest durable checkpoint and why a newer one is not there yet."""

    durable: DurableCheckpoint | None
    syncing: str | None  # the local file being copied now
    last_error: str | None
    warning: str | None
    attempts: int  # tries for the checkpoint now pending; 0 once it is durable
    last_sync_s: float | None  # duration of the last successful sync
    bytes_per_s: float | None
    fenced: bool = False  # the lease check failed: this sync writes nothing more


class _Stopped(Exception):
    """The sync is stopping: a copy in flight is abandoned (its temp removed)."""


class _Fenced(Exception):
    """The lease check raised: this supervisor may no longer write to home."""


class CheckpointSync:
    """Keeps home's newest durable checkpoint up to date with the local dir, from one low-priority thread."""

    def __init__(self, local_dir: Path, home_ckpt_dir: Path, *, epoch: int, keep: int = 1,
                 fence: Callable[[], None] | None = None, polling: bool = False, retry_max_s: float = 300.0,
                 log: Log | None = None) -> None:  # fmt: skip
        if keep < 1:
            raise ValueError(f"keep must be at least 1 (home must hold a checkpoint), got {keep}")
        self.local_dir = Path(local_dir)
        self.home = Path(home_ckpt_dir)
        self.epoch = epoch
        self.keep = keep
        self._fence_fn = fence
        self._polling = polling
        self._retry_max_s = retry_max_s
        self._log: Log = log or _no_log
        self._delay_s = float(os.environ.get(_CHUNK_DELAY_ENV) or 0)
        self._cond = threading.Condition()  # guards everything below; flush waits on it
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: Watcher | None = None
        self._prepared = False
        self._flushers = 0
        self._passes = 0
        self._last_outcome: _Outcome | None = None
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
        """Start the watcher and the one worker thread (which first cleans up temps a killed process left)."""
        if self._thread is not None:
            return
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self._watcher = watch_dir(self.local_dir, lambda _path: self.request(), polling=self._polling,
                                  on_note=lambda text: self._log("sync.watch_fallback", note=text))
        self._log("sync.watch", kind=self._watcher.kind, path=str(self.local_dir))
        self._wake.set()
        self._thread = threading.Thread(target=self._run, name="f5guard-sync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """A checkpoint may be complete now (watcher events, the trainer's `checkpoint` progress events)."""
        self._wake.set()

    def flush(self, timeout_s: float) -> bool:
        """Make the newest valid local checkpoint durable now and wait; True if home then holds it (or newer).

        True as well when there is no local checkpoint at all: nothing would be lost.
        """
        deadline = time.monotonic() + timeout_s
        target = self._candidate()
        if target is None:
            return True
        thread = self._thread
        if thread is not None and thread.is_alive():
            with self._cond:
                self._flushers += 1
                passes = self._passes
            try:
                self._wake.set()
                with self._cond:
                    while not self._covered(target, self._durables) and not self._fenced and thread.is_alive():
                        if self._passes > passes and self._last_outcome is _Outcome.NO_SPACE:
                            break  # waiting will not make room; the warning says what to do
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cond.wait(min(remaining, 1.0))
            finally:
                with self._cond:
                    self._flushers -= 1
        else:
            while True:
                outcome = self._pass(in_worker=False)
                remaining = deadline - time.monotonic()
                if self._covered(target, self._durables) or remaining <= 0:
                    break
                if outcome in (_Outcome.FENCED, _Outcome.NO_SPACE):
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
            return SyncStatus(self._durables[-1] if self._durables else None, self._syncing, self._last_error,
                              self._warning, self._attempts, self._last_sync_s, self._bytes_per_s, self._fenced)

    # -- the worker ------------------------------------------------------------------------------------------
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
                delay, backoff = backoff, min(backoff * 2, self._retry_max_s)
            else:
                backoff = FIRST_RETRY_S
                delay = {_Outcome.TORN: TORN_RETRY_S, _Outcome.NO_SPACE: min(NO_SPACE_RETRY_S, self._retry_max_s)
                         }.get(outcome)  # fmt: skip
            if delay is not None:
                delay = min(delay, self._retry_max_s)
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
            self._set(fenced=True, last_error=f"stopped syncing to {self.home}: the lease check failed ({err})")
            self._log("sync.fenced", error=str(err))
        except OSError as err:  # listing home, free space, mkdir: a Drive that is gone for a moment
            outcome = _Outcome.FAILED
            self._set(last_error=f"could not read {self.home} while syncing: {err.strerror or err}")
            self._log("sync.error", error=self._last_error)
        with self._cond:
            self._passes += 1
            self._last_outcome = outcome
            self._cond.notify_all()
        return outcome

    def _set(self, **fields: Any) -> None:
        with self._cond:
            for name, value in fields.items():
                setattr(self, f"_{name}", value)

    def _fence(self) -> None:
        if self._fence_fn is None:
            return
        try:
            self._fence_fn()
        except Exception as err:  # noqa: BLE001 - any failure of the lease check: we cannot prove we own home
            raise _Fenced(str(err) or type(err).__name__) from err

    def _prepare(self) -> None:
        """Once: remove temps a killed sync left on home, and trim to ``keep`` (e.g. after keep was lowered)."""
        self._fence()
        self.home.mkdir(parents=True, exist_ok=True)
        for name in os.listdir(self.home):
            if _TEMP.match(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.home / name)
                self._log("sync.removed_temp", file=name)
        durables = list_durable(self.home)
        if durables:
            self._trim(durables, durables[-1])
        self._set(durables=list_durable(self.home))
        self._prepared = True

    def _candidate(self) -> CheckpointInfo | None:
        """The newest valid local training checkpoint; numbered files win ties (they are never rewritten)."""
        training = [c for c in scan_dir(self.local_dir).valid if c.kind != "pretrained" and c.path.suffix == ".pt"]
        return max(training, key=lambda c: (c.update, c.kind == "numbered", c.name), default=None)

    def _covered(self, info: CheckpointInfo, durables: list[DurableCheckpoint]) -> bool:
        """Home already holds this update (e.g. the one restored from), or something at least as new."""
        return any(d.update == info.update or (d.epoch, d.update) >= (self.epoch, info.update) for d in durables)

    def _sync_newest(self, in_worker: bool) -> _Outcome:
        candidate = self._candidate()
        durables = list_durable(self.home)
        self._set(durables=durables)
        if candidate is None or self._covered(candidate, durables):
            self._set(attempts=0, torn_in_row=0)
            return _Outcome.NOTHING
        free = shutil.disk_usage(self.home).free
        need = candidate.size + SPACE_MARGIN
        if free < need:
            self._set(warning=self._space_warning(free, need, durables))
            self._log("sync.no_space", file=candidate.name, update=candidate.update, free=free, need=need)
            return _Outcome.NO_SPACE
        final = self.home / durable_name(self.epoch, candidate.update)
        tmp = self.home / f".{final.name}.tmp-{os.getpid()}"
        self._fence()
        with self._cond:
            self._syncing = candidate.name
            self._attempts += 1
        try:
            return self._copy_and_publish(candidate, final, tmp, in_worker)
        finally:
            self._set(syncing=None)

    def _space_warning(self, free: int, need: int, durables: list[DurableCheckpoint]) -> str:
        kept = f"keeping model at update {durables[-1].update}" if durables else "no checkpoint is on home yet"
        if self.keep > 1 and len(durables) > 1:
            advice = "free space on Drive or set keep = 1"
        else:
            advice = "free space on Drive (files deleted through the mount sit in Drive's trash until emptied)"
        return f"home has {_size(free)} free, the checkpoint needs {_size(need)}: {kept}; {advice}"

    def _copy_and_publish(self, candidate: CheckpointInfo, final: Path, tmp: Path, in_worker: bool) -> _Outcome:
        """temp copy (hashed) -> fsync -> verify on home -> rename -> manifest; the temp never survives a failure."""
        started = time.monotonic()
        fenced_at = started
        published = False

        def check() -> None:
            nonlocal fenced_at
            if in_worker and self._stopping.is_set():
                raise _Stopped
            if time.monotonic() - fenced_at >= FENCE_EVERY_S:
                self._fence()
                fenced_at = time.monotonic()

        self._log("sync.start", file=candidate.name, update=candidate.update, size=candidate.size)
        try:
            src_fd = os.open(candidate.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                before = os.fstat(src_fd)
                size, sha = _copy(src_fd, tmp, check=check, delay_s=self._delay_s)
                after = os.fstat(src_fd)
            finally:
                os.close(src_fd)
            now = _stat_or_none(candidate.path)
            if not _same(before, after) or not _same(before, now) or size != before.st_size:
                return self._torn(candidate)
            update = inspect_checkpoint(tmp, kind="last").update
            if update != candidate.update:
                return self._torn(candidate)  # rewritten within one mtime tick: the copy holds a newer save
            self._fence()
            os.replace(tmp, final)  # a crash from here on leaves a complete file without manifest: not durable
            published = True
            fsync_dir(self.home)
            self._fence()
            synced_at = time.time()
            atomic_write_json(final.with_suffix(".json"), {
                "format": MANIFEST_FORMAT, "file": final.name, "update": update, "epoch": self.epoch,
                "size": size, "sha256": sha, "synced_at": synced_at, "source_name": candidate.name,
                "host": socket.gethostname()})  # fmt: skip
        except _Stopped:
            self._log("sync.abandoned", file=candidate.name, reason="stopping")
            return _Outcome.STOPPED
        except FileNotFoundError as err:
            if err.filename == str(candidate.path):
                return self._torn(candidate)  # F5-TTS rotated it away (keep_last_n_checkpoints): look again
            return self._failed(f"could not copy {candidate.path} to {tmp}: {err.strerror or err}")
        except _ReadError as err:
            return self._failed(f"could not read {candidate.path} while syncing: {err.err.strerror or err.err}")
        except OSError as err:
            what = "write" if published else "copy"
            return self._failed(f"could not {what} {candidate.path.name} to {tmp}: {err.strerror or err}",
                                nospace=err.errno in (errno.ENOSPC, errno.EDQUOT))  # fmt: skip
        except CheckpointInvalid as err:
            return self._failed(f"the copy of {candidate.name} on home did not verify, retrying: {err}")
        finally:
            if not published:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        elapsed = time.monotonic() - started
        durable = DurableCheckpoint(final, final.with_suffix(".json"), update, self.epoch, size, sha, synced_at,
                                    candidate.name)  # fmt: skip
        rate = size / elapsed if elapsed > 0 else None
        self._set(last_error=None, warning=None, attempts=0, torn_in_row=0, last_sync_s=elapsed, bytes_per_s=rate)
        self._log("sync.done", file=final.name, update=update, size=size, seconds=round(elapsed, 3),
                  source=candidate.name)  # fmt: skip
        try:
            self._trim(list_durable(self.home), durable)
        except OSError as err:  # the new one is durable; an old one left behind is only wasted space
            self._log("sync.trim_failed", error=f"could not delete old checkpoints in {self.home}: {err}")
        self._set(durables=list_durable(self.home))
        return _Outcome.DONE

    def _torn(self, candidate: CheckpointInfo) -> _Outcome:
        with self._cond:
            self._torn_in_row += 1
            torn = self._torn_in_row
            if torn >= 3:
                self._warning = (f"{candidate.name} was rewritten during each of the last {torn} copies to home; "
                                 "a numbered checkpoint (save_per_updates) is never rewritten and syncs cleanly")
        self._log("sync.torn", file=candidate.name, update=candidate.update, in_a_row=torn)
        return _Outcome.TORN

    def _failed(self, message: str, *, nospace: bool = False) -> _Outcome:
        self._set(last_error=message)
        self._log("sync.error", error=message, no_space=nospace)
        return _Outcome.FAILED

    def _trim(self, durables: list[DurableCheckpoint], newest: DurableCheckpoint) -> None:
        """Delete what ``keep`` does not cover, older than ``newest`` (file, then manifest).

        Never one with more progress than ``newest``: after a fallback to an older start, the old
        epoch's further-trained checkpoint stays until this run has passed it.
        """
        key = (newest.epoch, newest.update)
        older = [d for d in durables if (d.epoch, d.update) < key]
        spare = max(0, len(older) - (self.keep - 1))
        known = {p.name for d in durables for p in (d.path, d.manifest)}
        for d in older[:spare]:
            if d.update > newest.update:
                continue
            self._fence()
            for path in (d.path, d.manifest):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            self._log("sync.deleted", file=d.path.name, update=d.update, epoch=d.epoch)
        for name in os.listdir(self.home):  # halves of pairs: a file whose manifest never came, or the reverse
            match = _NAME.match(name)
            if match is None or name in known or (int(match[1]), int(match[2])) >= key:
                continue
            if int(match[2]) > newest.update:
                continue
            self._fence()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.home / name)
            self._log("sync.deleted", file=name, reason="incomplete pair")


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _same(a: os.stat_result, b: os.stat_result | None) -> bool:
    """Same file, same bytes as far as the kernel can tell (torch.save rewrites in place: same inode)."""
    return b is not None and (a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_ino, b.st_size,
                                                                                     b.st_mtime_ns, b.st_ctime_ns)
