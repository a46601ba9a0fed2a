"""Which kind of home this is (``[store] kind``): set in the config, or "auto" from what the mount offers.

"auto", read-only and instant (status runs it): a bucket named (``[store] bucket`` or $F5GUARD_STORE_BUCKET, set by
the SkyPilot task) -> bucket, asked through its SDK (an estimate without the SDK); DriveFS's attributes answer on
the home folder -> drive; else a FUSE or network file system (/proc/mounts) -> writeback, an estimate; else a
plain disk -> local.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from f5guard.cloud import drivefs
from f5guard.cloud.bucket import QUICK_BYTES, SDK, BucketStore, BucketURL, client, sdk_missing
from f5guard.cloud.evidence import DriveStore, LocalStore, Store, WritebackStore
from f5guard.schema import StoreSettings

MOUNTS = Path("/proc/mounts")
# File systems whose writes reach their store later, or elsewhere, than the local disk's: no local fsync makes a
# file safe on them. fuseblk is a local block device through FUSE (ntfs-3g): a disk.
NETWORK_TYPES = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "lustre", "afs",
                           "davfs", "9p", "sshfs", "s3fs", "gcsfuse", "fuse"})  # fmt: skip


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    source: str

    @property
    def remote(self) -> bool:
        return self.fstype in NETWORK_TYPES or (self.fstype.startswith("fuse.") and self.fstype != "fuseblk")


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash in paths as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mount_of(path: Path, mounts: Path = MOUNTS) -> Mount | None:
    """The mount ``path`` lives on (the longest mount point above its real path); None when unknown."""
    try:
        lines = mounts.read_text(errors="replace").splitlines()
    except OSError:
        return None
    real = os.path.realpath(existing(path))
    best: Mount | None = None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = _unescape(parts[1])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.point)):
            best = Mount(point, parts[2], _unescape(parts[0]))
    return best


def existing(path: Path) -> Path:
    """``path`` or its nearest folder that exists (home may not exist yet on a first run)."""
    here = Path(os.path.abspath(path))
    while not here.exists() and here != here.parent:
        here = here.parent
    return here


def open_store(home: Path, kind: str, *, bytes_per_s: float, delay_s: float) -> Store:
    """The store for ``home`` (``kind``: auto, local, drive or writeback, ``[store] kind``); an estimate
    presumes ``bytes_per_s`` and at least ``delay_s`` per file (``lease.retention_delay_s``)."""

    def writeback(how: str) -> WritebackStore:
        return WritebackStore(how, delay_s=delay_s, bytes_per_s=bytes_per_s)

    if kind == "local":
        return LocalStore('set in the config ([store] kind = "local")')
    if kind == "writeback":
        return writeback('set in the config ([store] kind = "writeback"): in the cloud is estimated')
    if kind == "drive":
        return DriveStore('set in the config ([store] kind = "drive")', writeback("no DriveFS answer: "))
    probe = existing(home)
    if drivefs.answers(probe):
        return DriveStore(f"auto: DriveFS's upload attributes answer on {probe}", writeback("no DriveFS answer: "))
    mount = mount_of(probe)
    if mount is not None and mount.remote:
        return writeback(f"auto: {mount.fstype} mount at {mount.point} gives no upload evidence: in the cloud is "
                         "estimated")  # fmt: skip
    where = f"{mount.fstype} at {mount.point}" if mount else "no mount information"
    return LocalStore(f"auto: a local disk ({where})")


def open_configured(home: Path, settings: StoreSettings, *, delay_s: float, thorough: bool = True) -> Store:
    """The store ``[store]`` describes for ``home``. ``thorough=False`` (status): a bucket store reads no large
    file to checksum it (its size decides; the daemon compares checksums before it records an upload)."""
    if settings.bucket and settings.kind in ("auto", "bucket"):
        return open_bucket(home, settings, delay_s=delay_s, thorough=thorough)
    return open_store(home, settings.kind, bytes_per_s=settings.upload_bytes_per_s, delay_s=delay_s)


def open_bucket(home: Path, settings: StoreSettings, *, delay_s: float, thorough: bool = True) -> Store:
    """Home under a mounted bucket: the bucket's SDK answers where it is importable, else the estimate."""
    url = BucketURL.parse(settings.bucket)
    mount = Path(settings.mount) if settings.mount else home
    missing = sdk_missing(url.scheme)
    if missing is not None:
        return WritebackStore(f"bucket {url} at {mount}: {missing}: in the cloud is estimated", delay_s=delay_s,
                              bytes_per_s=settings.upload_bytes_per_s)  # fmt: skip
    fallback = WritebackStore(f"bucket {url}: no answer from it", delay_s=delay_s,
                              bytes_per_s=settings.upload_bytes_per_s)  # fmt: skip
    how = f"bucket {url} mounted at {mount}: each object's size and checksum, asked with {SDK[url.scheme][0]}"
    timeout_s = 10.0 if thorough else 3.0  # status (the daemon's answer included) waits little for a bucket
    return BucketStore(how, url, mount, fallback, objects=lambda: client(url, settings.endpoint, timeout_s),
                       verify_bytes=None if thorough else QUICK_BYTES)  # fmt: skip
