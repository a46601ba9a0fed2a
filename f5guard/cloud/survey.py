"""What a home offers, for `f5guard doctor`: its file system, whether DriveFS's upload attributes answer, free
space against what training needs, and a timed upload (a probe file, MB/s until the store says it is in the
cloud, removed after). One ``Finding`` per topic, with one line of advice when something is wrong."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from f5guard.cloud import drivefs
from f5guard.cloud.detect import existing, mount_of
from f5guard.cloud.evidence import Store, Where

PROBE_DIR = ".f5guard"  # under home: where f5guard keeps its own files
CHUNK = 4 * 1024 * 1024
ANSWER_WAIT_S = 10.0  # how long a new file may go without DriveFS's attributes before they count as absent


@dataclass(frozen=True)
class Finding:
    topic: str
    value: str  # what was found
    advice: str | None = None  # one line when something is wrong
    blocking: bool = False  # training cannot work until it is fixed: doctor exits 1


def home_findings(home: Path, store: Store, configured: str) -> list[Finding]:
    """The folder, its file system, DriveFS's attributes and the kind of store f5guard judges it by."""
    found: list[Finding] = []
    if not home.is_dir():
        parent = existing(home)
        ok = os.access(parent, os.W_OK)
        advice = None if ok else f"{parent} is not writable: is Drive mounted?"
        found.append(Finding("home", f"{home} does not exist yet (nearest folder: {parent})", advice, not ok))
    elif not os.access(home, os.W_OK | os.X_OK):
        found.append(Finding("home", str(home), f"{home} is not writable by this user", blocking=True))
    else:
        found.append(Finding("home", str(home)))
    mount = mount_of(home)
    found.append(Finding("filesystem", f"{mount.fstype} at {mount.point} ({mount.source})" if mount else "unknown"))
    answers = drivefs.answers(existing(home))
    found.append(Finding("drivefs attributes", "answer on the folder" if answers else "no answer"))
    advice = None
    if store.kind == "local" and mount is not None and mount.remote:
        advice = (f"home is a {mount.fstype} mount but kind is local: a file in its cache would be called safe; "
                  'set [store] kind = "auto" or "writeback"')  # fmt: skip
    elif configured == "drive" and not answers:
        advice = "kind is drive but DriveFS's attributes do not answer here: every file is estimated"
    elif store.kind == "writeback":
        advice = "no upload evidence from this mount: in the cloud is an estimate ([store] upload_mb_per_s)"
    found.append(Finding("store", f"{store.kind}: {store.how}", advice))
    return found


def space_finding(home: Path, need: int, what: str) -> Finding:
    """Free space against ``need`` bytes (``what`` says what they are for)."""
    try:
        usage = shutil.disk_usage(existing(home))
    except OSError as err:
        return Finding("space", f"unreadable: {err.strerror or err}", f"cannot read the free space of {home}")
    value = f"{usage.free / 1e9:.1f} GB free of {usage.total / 1e9:.1f} GB"
    if need and usage.free < need:
        return Finding("space", value, f"{what} need {need / 1e9:.1f} GB: free space on Drive (and empty its trash)",
                       blocking=True)  # fmt: skip
    return Finding("space", f"{value}{f'; {what} need {need / 1e9:.1f} GB' if need else ''}")


def _answers_soon(path: Path, sleep: Callable[[float], None]) -> bool:
    """Whether DriveFS's attributes appear on a new file within ANSWER_WAIT_S (not necessarily at once)."""
    deadline = time.monotonic() + ANSWER_WAIT_S
    while drivefs.ask(path) is None:
        if time.monotonic() >= deadline:
            return False
        sleep(0.1)
    return True


def upload_probe(home: Path, store: Store, size: int, timeout_s: float,
                 sleep: Callable[[float], None] = time.sleep) -> Finding:  # fmt: skip
    """Write ``size`` bytes under home, then time it until the store says it is in the cloud; removed after."""
    folder = home / PROBE_DIR
    probe = folder / f"doctor-probe-{os.getpid()}.bin"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(probe, "wb") as handle:
            left = size
            while left > 0:
                left -= handle.write(os.urandom(min(CHUNK, left)))  # random: nothing for a store to compress
            handle.flush()
            os.fsync(handle.fileno())
        wrote_s = max(time.monotonic() - started, 1e-6)
        written = f"wrote {size / 2**20:.0f} MiB at {size / wrote_s / 1e6:.0f} MB/s"
        if store.kind == "local":
            return Finding("upload", f"{written}; a local disk stores it at once")
        if store.kind == "writeback" or (store.kind == "drive" and not _answers_soon(probe, sleep)):
            return Finding("upload", f"{written}; no upload evidence for the new file: cannot time the upload",
                           "in the cloud is estimated from age and [store] upload_mb_per_s")  # fmt: skip
        deadline = started + timeout_s
        while (seen := store.look(probe)).where is not Where.CLOUD:
            if time.monotonic() >= deadline:
                return Finding(
                    "upload",
                    f"{written}; not in the cloud after {timeout_s:.0f} s ({seen.detail})",
                    f"uploads are slower than {size / timeout_s / 1e6:.2f} MB/s: expect long uploads "
                    "of 5.4 GB checkpoints, and keep the runtime until status says they are in the cloud",
                )
            sleep(0.5)
        took = max(time.monotonic() - started, 1e-6)
        return Finding("upload", f"{written}; in the cloud after {took:.0f} s: ~{size / took / 1e6:.1f} MB/s")
    except OSError as err:
        return Finding("upload", f"failed: {err.strerror or err}", f"could not write {probe}", blocking=True)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
