"""Every process of a training answers a stack-dump signal into a file of its own, with its role on record.

A hang used to be diagnosed with SIGABRT to the whole group: the trainer, each rank and each DataLoader worker
printed its stacks into the one stage log at once, interleaved line by line. Here each process registers
``faulthandler`` on SIGUSR1 writing to ``<dir>/<pid>.stacks`` and notes ``<dir>/<pid>.json`` (pid, role,
command line), so the daemon (training/hangdump.py) can signal each process and append each dump to the stage
log as one labelled block. A process forked from a registered one (a DataLoader worker) registers itself in the
child at fork: faulthandler's file would otherwise be its parent's. Stdlib only: the stack python imports it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

ENV = "F5GUARD_STACKS"  # the folder, set by the daemon in the train stage's environment
SIGNAL = signal.SIGUSR1
_state: dict[str, Any] = {"role": None, "file": None, "fork_hook": False}


def stack_dir(stage_dir: Path) -> Path:
    """Where the processes of the stage in ``stage_dir`` register (its environment names it: ``stage_env``)."""
    return stage_dir / "stacks"


def stage_env(stage_dir: Path) -> dict[str, str]:
    return {ENV: str(stack_dir(stage_dir))}


def role_here() -> str:
    """``rank R of W`` in a group the launcher started (trainer/group.py), else ``trainer``."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}"
    return "trainer"


def register(role: str) -> bool:
    """Dump every thread's stack into this process's own file on SIGUSR1; False where no folder is set (the
    trainer run by hand) or it cannot be written (then SIGUSR1 keeps its default)."""
    folder = os.environ.get(ENV)
    if not folder:
        return False
    try:
        os.makedirs(folder, exist_ok=True)
        _prune(folder)
        handle = open(os.path.join(folder, f"{os.getpid()}.stacks"), "a", encoding="utf-8")  # noqa: SIM115 - held for the process's life
    except OSError:
        return False
    faulthandler.register(SIGNAL, file=handle, all_threads=True, chain=False)
    _state["file"], _state["role"] = handle, role  # faulthandler keeps only the descriptor: keep the file open
    _note(folder, role)
    if not _state["fork_hook"]:
        os.register_at_fork(after_in_child=_forked)
        _state["fork_hook"] = True
    return True


def name_role(role: str) -> None:
    """Say what this registered process turned out to be (the trainer became a launcher, a forked child a
    DataLoader worker)."""
    folder = os.environ.get(ENV)
    if folder and _state["role"] is not None:
        _state["role"] = role
        with contextlib.suppress(OSError):
            _note(folder, role)


def parent_role() -> str | None:
    """The role this process had before ``name_role`` or the fork (for a child's ``... of <parent>``)."""
    return _state.get("parent")


def _forked() -> None:
    parent = _state["role"]
    if parent is None:
        return
    _state["parent"] = parent
    register(f"child of {parent}")


def _note(folder: str, role: str) -> None:
    try:
        with open("/proc/self/cmdline", "rb") as handle:
            # as psutil reads it (the daemon compares the two): NUL-separated, the trailing NUL dropped
            cmdline = [os.fsdecode(part) for part in handle.read().rstrip(b"\0").split(b"\0")]
    except OSError:
        cmdline = [sys.executable, *sys.argv]
    doc = {"pid": os.getpid(), "ppid": os.getppid(), "role": role, "cmdline": cmdline}
    path = Path(folder) / f"{os.getpid()}.json"
    temp = path.with_suffix(".json.tmp")
    temp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(temp, path)


def _prune(folder: str) -> None:
    """Forget processes that are gone (earlier attempts): their pid may be reused by anything."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            stem = entry.name.split(".", 1)[0]
            if stem.isdigit() and not _alive(int(stem)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_registry(folder: Path) -> dict[int, dict[str, Any]]:
    """pid -> what the process noted (role, command line); unreadable notes are skipped."""
    found: dict[int, dict[str, Any]] = {}
    try:
        paths = list(folder.glob("*.json"))
    except OSError:
        return found
    for path in paths:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            found[int(doc["pid"])] = doc
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def dump_path(folder: Path, pid: int) -> Path:
    return folder / f"{pid}.stacks"
