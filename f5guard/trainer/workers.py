"""DataLoader worker hygiene: survive a signal to the whole process group, and never hang at exit.

A stop signal (SIGTERM from a supervisor, SIGINT from Ctrl-C) often reaches the whole process group. torch's
DataLoader workers die on it, and the main process then fails on the lost worker mid-update, so a graceful
stop needs the workers to ignore it. Workers that ignore SIGTERM no longer die from multiprocessing's
terminate() at interpreter exit, so the main process shuts them down itself before it exits.
"""

from __future__ import annotations

import gc
import multiprocessing
import signal
from typing import Any

from f5guard.trainer import stackdump


def shield_workers() -> bool:
    """Make forked DataLoader workers ignore SIGTERM and SIGINT; True if applied.

    torch installs its worker signal handlers (SIGTERM: print, then die) through a module attribute at the top
    of each worker's loop; wrapping that attribute is the only hook F5-TTS's DataLoader (no worker_init_fn)
    leaves. Forked workers inherit the wrapper (fork is Linux's default start method through Python 3.13).
    """
    from torch.utils.data._utils import signal_handling

    original = getattr(signal_handling, "_set_worker_signal_handlers", None)
    if original is None:
        return False
    if getattr(original, "f5guard_shield", False):
        return True

    def set_worker_signal_handlers(*args: Any) -> None:
        original(*args)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stackdump.name_role(f"DataLoader worker of {stackdump.parent_role()}")  # its hang dump's label

    set_worker_signal_handlers.f5guard_shield = True  # type: ignore[attr-defined]
    signal_handling._set_worker_signal_handlers = set_worker_signal_handlers  # type: ignore[attr-defined]
    return True


def release_workers(trainer: Any | None) -> None:
    """Shut the DataLoader workers down now, while torch's own shutdown path still runs.

    accelerate keeps the prepared DataLoader (and its persistent worker iterator) alive until interpreter
    exit, when torch skips its shutdown and multiprocessing's terminate() would be ignored: a hang.
    Dropping accelerate's references lets the iterator's finaliser join the workers; any worker still alive
    after that only ever fed batches, so it is killed.
    """
    if trainer is not None:
        trainer.accelerator.free_memory()
    gc.collect()
    leftovers = multiprocessing.active_children()
    if leftovers:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # torch's SIGCHLD handler would raise on the kill
        for child in leftovers:
            child.kill()
            child.join(timeout=5)
