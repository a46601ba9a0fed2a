"""Tie a child's life to its supervisor's: Linux's PR_SET_PDEATHSIG, set before exec or by the child itself.

Setting it before exec needs Popen's preexec_fn, which forces a full fork of the threaded daemon (~30 ms a
restart); a child that is an f5guard entry sets it itself on start (``F5GUARD_PARENT_PID`` tells it whom to
watch), which leaves Popen its fast vfork path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

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
    if str(os.getppid()) != expected:
        os.kill(os.getpid(), sig)
