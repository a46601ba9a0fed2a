"""Only regular files are read, and every file name can be shown: the rules the fingerprints and the recipe share.

A FIFO blocks whoever opens it for reading until a writer comes (forever, for a stray ``mkfifo x.wav``); a
socket, a device, a dangling symlink, a symlink loop or a file without read permission is no input either.
Each is *skipped with a reason*, never opened: ``stat`` first, then ``open`` with ``O_NONBLOCK`` and ``fstat``,
so a file swapped for a FIFO between the two cannot block either.

File names that are not valid UTF-8 (``bad\\xffbyte.wav`` from an old zip) are opened by their real name
(Python's surrogate-escaped ``str``, the bytes the system gave) and shown and stored everywhere with the bad
bytes as backslash escapes: ``shown`` is the one place that turns a path into text for logs, state and JSON.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)
# errors no retry fixes; anything else (EIO, ENOTCONN: Drive not answering) is the machine's, worth a retry
_FOR_GOOD = {errno.EACCES: "unreadable", errno.EPERM: "unreadable", errno.ENAMETOOLONG: "name too long"}


class Unreadable(OSError):
    """A file f5guard does not read: not a regular file, or one no retry makes readable. ``reason`` says why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{shown(path)}: {reason}")
        self.path = shown(path)
        self.reason = reason


def shown(path: str | os.PathLike[str]) -> str:
    """A path as text that any UTF-8 writer accepts: bytes that are not UTF-8 become ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_shown_as_is(path: str | os.PathLike[str]) -> bool:
    """Whether the name is valid UTF-8, i.e. what is shown is the real name."""
    return shown(path) == os.fspath(path)


def not_regular(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not read (``not a regular file (a FIFO)``), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "an unknown kind of file")
    return f"not a regular file ({kind})"


def problem(path: str | os.PathLike[str], err: OSError) -> str | None:
    """Why ``path`` cannot be read for good (a dangling symlink, a loop, no permission), or None for an error a
    retry may fix (a vanished file, Drive not answering)."""
    if isinstance(err, Unreadable):
        return err.reason
    if err.errno == errno.ELOOP:
        return "symlink loop"
    if err.errno in (errno.ENOENT, errno.ENOTDIR) and os.path.islink(path):
        try:
            target = shown(os.readlink(path))
        except OSError:
            target = "?"
        return f"dangling symlink (-> {target})"
    what = _FOR_GOOD.get(err.errno or 0)
    return f"{what}: {err.strerror}" if what else None


def check(path: str | os.PathLike[str]) -> os.stat_result:
    """``path``'s stat when it is a regular file; Unreadable with the reason when it is not or cannot be, the
    plain OSError when a retry may help."""
    try:
        st = os.stat(path)
    except OSError as err:
        reason = problem(path, err)
        if reason is None:
            raise
        raise Unreadable(path, reason) from err
    reason = not_regular(st.st_mode)
    if reason is not None:
        raise Unreadable(path, reason)
    return st


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for reading, only if it is a regular file (see ``check``); never blocks on a FIFO."""
    check(path)  # stat before open: opening a device can act (rewind a tape, arm a watchdog)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        reason = problem(path, err)
        if reason is None:
            raise
        raise Unreadable(path, reason) from err
    try:
        reason = not_regular(os.fstat(fd).st_mode)  # swapped for a FIFO since the stat: O_NONBLOCK kept us going
        if reason is None:
            os.set_blocking(fd, True)  # a regular file after all: plain reads (FUSE mounts see the flag too)
            return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    raise Unreadable(path, reason)
