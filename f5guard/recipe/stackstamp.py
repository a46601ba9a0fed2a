"""The machine-level record that this interpreter's stack was verified: setup runs once per machine, not once
per speaker run.

Keyed by what makes the verdict true: the interpreter, the versions of every distribution it checked, what was
required (modules, pins, a GPU), this boot of the machine and setup's own code. A second run whose key matches
reuses the verdict in milliseconds; a pip install, a reboot or a new f5guard changes the key and checks again.

Where: ``$XDG_CACHE_HOME/f5guard/setup`` (``~/.cache/f5guard/setup``), private to the user (0700). On Colab ~
is /root on the VM's own disk, lost together with /content and the packages installed there, which is what a
stamp about those packages must do; Drive (home) outlives the VM and would vouch for packages that are gone.
Not /tmp: any user can write there, and a planted stamp would skip the check. A workstation keeps ~/.cache
over reboots, and the boot id in the key (the one runtime stages use: f5guard.machine) makes a stamp from an
earlier boot (another driver, another GPU) void.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from f5guard.fsutil import atomic_write_json
from f5guard.machine import boot_id

FORMAT = 1
_CODE = ("setup.py", "stackplan.py", "stackprobe.py", "pins.py", "stackstamp.py")


def directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "f5guard" / "setup"


def _code_hash() -> str:
    """setup's own code: a new f5guard may judge the same stack differently."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in _CODE:
        with contextlib.suppress(OSError):
            digest.update(name.encode() + b"\0" + (here / name).read_bytes())
    return digest.hexdigest()[:16]


def key(modules: list[tuple[str, str]], pins: dict[str, str], dists: list[str], require_gpu: bool) -> dict[str, Any]:
    """What the verdict depends on; ``dists`` are the distributions whose versions count (read from metadata
    here, without importing anything: milliseconds)."""
    importlib.invalidate_caches()
    versions: dict[str, str | None] = {}
    for dist in sorted(set(dists)):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    document = {
        "format": FORMAT,
        "executable": sys.executable,
        "prefix": sys.prefix,
        "python": platform.python_version(),
        "boot_id": boot_id(),
        "modules": sorted(modules),
        "pins": dict(sorted(pins.items())),
        "versions": versions,
        "require_gpu": require_gpu,
        "code": _code_hash(),
    }
    normal: dict[str, Any] = json.loads(json.dumps(document))  # as it reads back: tuples become lists
    return normal


def path_for(folder: Path, stamp_key: dict[str, Any]) -> Path:
    """One stamp per interpreter and requirement set; its name from the parts that do not change on install."""
    ident = json.dumps([stamp_key["executable"], stamp_key["modules"], stamp_key["require_gpu"]], sort_keys=True)
    return folder / f"{hashlib.sha256(ident.encode()).hexdigest()[:20]}.json"


def read(folder: Path, stamp_key: dict[str, Any]) -> dict[str, Any] | None:
    """The stored verdict when its key is exactly this one, else None (a damaged stamp is just a miss)."""
    try:
        stored = json.loads(path_for(folder, stamp_key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != stamp_key or not isinstance(stored.get("report"), dict):
        return None
    report: dict[str, Any] = stored["report"]
    return report


def write(folder: Path, stamp_key: dict[str, Any], report: dict[str, Any]) -> Path:
    path = path_for(folder, stamp_key)
    atomic_write_json(path, {"key": stamp_key, "report": report})
    return path


@contextlib.contextmanager
def locked(folder: Path, executable: str = sys.executable) -> Iterator[None]:
    """One setup at a time per interpreter: two runs' setup stages must not pip-install into one Python at
    once; the second waits, then finds the first one's stamp."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = hashlib.sha256(executable.encode()).hexdigest()[:20]
    with open(folder / f"{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
