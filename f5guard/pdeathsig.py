"""Tie a child's life to its supervisor's: Linux's PR_SET_PDEATHSIG, set before exec or by the child itself.

Setting it before exec needs Popen's preexec_fn, which forces a full fork of the threaded daemon (~30 ms a
restart); a child that is an f5guard entry sets it itself on start (``F5GUARD_PARENT_PID`` tells it whom to
watch), which leaves Popen its fast vfork path.

Such a child also keeps its output from depending on the supervisor: its stdout/stderr is a pipe only the
daemon reads, so after the daemon dies the next print or tqdm redraw would raise BrokenPipeError and kill a
trainer that was told to checkpoint and exit (seen: 26 of 26 daemon kills lost updates that way).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import io
import os
import signal
import sys
from typing import TextIO

PARENT_ENV = "F5GUARD_PARENT_PID"
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel for ``sig`` when our parent dies (also safe in a just-forked child before exec)."""
    _libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def follow_supervisor(sig: int = signal.SIGTERM) -> None:
    """In a child started with $F5GUARD_PARENT_PID: take the death signal, and act at once if the supervisor
    already died between our fork and this call (the kernel only signals deaths that come after)."""
    expected = os.environ.get(PARENT_ENV)
    if not expected:
        return
    die_with_parent(sig)
    survive_closed_output()
    if str(os.getppid()) != expected:
        os.kill(os.getpid(), sig)


class _OutputThatOutlivesItsReader(io.TextIOBase):
    """A text stream that writes through until its reader is gone (EPIPE), then drops what is written."""

    def __init__(self, stream: TextIO) -> None:
        self._stream: TextIO | None = stream

    def write(self, text: str) -> int:
        if self._stream is not None:
            try:
                self._stream.write(text)
            except OSError as err:
                self._gone(err)
        return len(text)

    def flush(self) -> None:
        if self._stream is not None:
            try:
                self._stream.flush()
            except OSError as err:
                self._gone(err)

    def _gone(self, err: OSError) -> None:
        if err.errno != errno.EPIPE:
            raise err
        self._stream = None  # the supervisor died: nobody will read this output again

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")  # callers then fall back to write(): keep them on this object


def survive_closed_output() -> None:
    """Make sys.stdout and sys.stderr survive the death of the daemon that reads them."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _OutputThatOutlivesItsReader):
            setattr(sys, name, _OutputThatOutlivesItsReader(stream))
