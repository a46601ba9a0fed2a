"""Copying a big file to slow storage without hurting the trainer: hashed on the way, fsynced, page cache
dropped behind it, from a thread at the lowest best-effort I/O priority.

Shared by the sync (local -> home) and the restore (home -> local), with the same hash of a file at rest
(``file_sha256``, what a manifest's sha256 is checked against); torch-free.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path

CHUNK = 8 * 1024 * 1024  # large sequential I/O: few syscalls; FUSE (Drive) prefers big writes


class ReadError(Exception):
    """The source could not be read (as opposed to the target not written)."""

    def __init__(self, err: OSError) -> None:
        super().__init__(err.strerror or str(err))


def drop_cache(fd: int, offset: int, length: int) -> None:
    # DONTNEED starts writeback of dirty pages and drops clean ones: a 5 GB copy must not evict the
    # trainer's page cache, nor pile up dirty pages that throttle every writer (measured: 4x slower without).
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


_buffers = threading.local()


def _buffer() -> memoryview:
    """One copy buffer per thread, reused: a fresh 8 MiB per copy stays resident in glibc's heap (+8 MB RSS)."""
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(CHUNK))
    return view


def copy_fd(src_fd: int, dst: Path, check: Callable[[], None] | None = None,
          delay_s: float = 0.0) -> tuple[int, str]:  # fmt: skip
    """Copy ``src_fd`` into a new file ``dst``, hashing on the way, then fsync; returns (size, sha256)."""
    digest = hashlib.sha256()
    view = _buffer()
    offset = 0
    dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        while True:
            if check is not None:
                check()
            try:
                n = os.preadv(src_fd, [view], offset)
            except OSError as err:
                raise ReadError(err) from err
            if n == 0:
                break
            digest.update(view[:n])
            written = 0
            while written < n:
                written += os.write(dst_fd, view[written:n])
            drop_cache(src_fd, offset, n)
            drop_cache(dst_fd, offset, n)  # starts this chunk's writeback now: the final fsync is short
            if offset >= 2 * CHUNK:
                drop_cache(dst_fd, offset - 2 * CHUNK, CHUNK)  # written back by now: drop it
            offset += n
            if delay_s:
                time.sleep(delay_s)
        os.fsync(dst_fd)
        drop_cache(dst_fd, 0, 0)
    finally:
        os.close(dst_fd)
    return offset, digest.hexdigest()


def file_sha256(path: str | os.PathLike[str], chunk: int = CHUNK) -> str:
    """Hex SHA-256 of a file, streamed (checkpoints are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "riscv64": 30, "ppc64le": 273, "s390x": 282}


def lower_io_priority() -> str:
    """Put the calling thread at best-effort level 7: below the trainer, never starved.

    Not the idle class: under BFQ it can wait forever while the trainer reads its dataset, and a
    graceful stop waits for the copy. Returns a line for the log.
    """
    nr = _SYS_IOPRIO_SET.get(platform.machine())
    if nr is None:
        return f"io priority unchanged: no ioprio_set syscall number known for {platform.machine()}"
    libc = ctypes.CDLL(None, use_errno=True)
    best_effort_7 = (2 << 13) | 7  # IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 7)
    if libc.syscall(nr, 1, threading.get_native_id(), best_effort_7) != 0:  # 1: IOPRIO_WHO_PROCESS (a tid)
        return f"io priority unchanged: ioprio_set failed ({os.strerror(ctypes.get_errno())})"
    return "io priority of the sync thread: best-effort, level 7 (lowest)"
