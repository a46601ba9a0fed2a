"""Crash-safe file writes: a reader sees the old complete file or the new complete one, never a mix."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_roots: set[Path] = set()  # folders this process must never create: a vanished home is Drive unmounted
_roots_lock = threading.Lock()


def keep_root(path: Path) -> None:
    """From now on ``make_dirs`` never creates ``path`` (nor what lies above it): when it vanishes, writes
    under it fail with ENOENT instead of quietly filling a local folder where Drive was mounted."""
    with _roots_lock:
        _roots.add(Path(os.path.abspath(path)))


def missing_root(path: Path) -> Path | None:
    """The kept root that ``path`` lies in, when that root is gone (not a folder now); else None."""
    path = Path(os.path.abspath(path))
    with _roots_lock:
        roots = [r for r in _roots if path == r or r in path.parents]
    return next((r for r in roots if not r.is_dir()), None)


def make_dirs(path: Path) -> None:
    """``mkdir -p`` that never recreates a kept root: below one, folders are made one level at a time from the
    root down (no check-then-create race: a root that vanishes midway makes the next mkdir fail)."""
    path = Path(os.path.abspath(path))
    if path.is_dir():
        return
    with _roots_lock:
        roots = [r for r in _roots if path == r or r in path.parents]
    if not roots:
        path.mkdir(parents=True, exist_ok=True)
        return
    root = max(roots, key=lambda r: len(r.parts))  # the innermost kept root
    if not root.is_dir():
        raise FileNotFoundError(errno.ENOENT, "gone (unmounted or deleted); not recreated", str(root))
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        with contextlib.suppress(FileExistsError):
            current.mkdir()


def fsync_dir(path: Path) -> None:
    """Persist a rename: the directory entry is data too (pueue skips this; a crash can then lose the file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # some FUSE mounts refuse to open directories; the rename itself is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass  # fsync on a directory is advisory on FUSE (Drive); nothing more can be done
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write aside, fsync, rename over ``path``, fsync the directory."""
    make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def publishing(path: Path, tmp: Path | None = None) -> Iterator[Path]:
    """A temp name for a writer that needs a path (torch.save, a copy, a hard link): when the block succeeds
    it is fsynced, renamed over ``path`` and the directory fsynced; when it fails it is removed."""
    tmp = tmp or path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)  # read-only is enough to fsync, and a linked source may be read-only
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)


def atomic_write_json(path: Path, document: Any) -> None:
    """Atomically write ``document`` as pretty, key-sorted JSON (diff-friendly when a user inspects it)."""
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


READ_MOST = 16 * 1024 * 1024  # a claim, manifest or request is a few hundred bytes; state a few hundred KB


def read_regular(path: Path, most: int = READ_MOST) -> bytes:
    """The bytes of a regular file of at most ``most`` bytes. A FIFO would block the reader forever, /dev/zero
    never ends and a huge file fills memory: each is an OSError (EINVAL, EFBIG) for the caller to word."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO, socket or device"
            raise OSError(errno.EINVAL, f"not a regular file ({kind})", str(path))
        if st.st_size > most:
            raise OSError(errno.EFBIG, f"{st.st_size} bytes, more than the {most} expected", str(path))
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > most:  # it grew while read
                raise OSError(errno.EFBIG, f"more than the {most} bytes expected", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_json(path: Path, most: int = READ_MOST) -> Any:
    """Read a JSON file; raises OSError or ValueError (json.JSONDecodeError, or nesting past the recursion
    limit: a hostile file) for the caller to word."""
    try:
        return json.loads(read_regular(path, most).decode("utf-8"))
    except RecursionError as err:
        raise ValueError(f"{path}: nested too deeply to be a document of f5guard") from err
