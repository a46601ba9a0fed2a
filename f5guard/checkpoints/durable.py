"""Durable checkpoints on home: a versioned file (``ckpt-e{epoch}-u{update}-{runtime tag}.pt``, never rewritten)
plus the manifest written after it is verified; and the restore of the newest one that still verifies.

The runtime tag makes every name one runtime's own: two runtimes that share an epoch (they started before Drive
showed either to the other) never write the same file. Progress ranks by update, whatever the epoch: epochs
fence writers, they do not rank progress (a takeover that restarted from an older point is not "newer").

A file with a valid manifest is *durable* on home; anything else on home (a half upload, a temp) is not. On a
Drive mount durable is not yet *in the cloud*: the manifest's ``cloud`` note says what its writer's store
answered (``uploading``, then ``confirmed`` or ``estimated``, rewritten by ``uploads`` on the VM that holds the
file), and other runtimes trust a record only that far (f5guard/cloud/records.py). This module owns the names
and the manifest format on home; ``publish`` decides when to write them. Torch-free: checkpoints are judged by
``f5guard.checkpoints.inspect``.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from f5guard.checkpoints import finite
from f5guard.checkpoints.copying import CopyMismatch, ReadError, algorithm_of, copy_fd
from f5guard.checkpoints.inspect import LAST_NAME, CheckpointInvalid, inspect_checkpoint
from f5guard.checkpoints.resume import temp_copy_path
from f5guard.cloud.records import IN_CLOUD_STATES, Record
from f5guard.errors import F5guardError
from f5guard.fsutil import atomic_write_json, fsync_dir, read_json
from f5guard.readback import MAX_UPDATE, epoch_in_name, epoch_of, update_of

Log = Callable[..., None]
MANIFEST_FORMAT = 2  # 2: "digest" = "crc32:<hex>"; 1 (read still): "sha256" = "<hex>"
_DIGEST = re.compile(r"^(crc32:[0-9a-f]{8}|sha256:[0-9a-f]{64})$")
# Names without a tag were written before runtimes tagged them; they still count.
NAME = re.compile(r"^ckpt-e(\d{4,})-u(\d{9,})(?:-([0-9a-f]{8}))?\.(pt|json)$")
TEMP = re.compile(
    r"^\.ckpt-e\d+-u\d+(?:-[0-9a-f]{8})?\.(pt\.tmp-\d+|json\..*\.tmp)$"
)  # the sync's, atomic_write_json's


class RestoreFailed(F5guardError, RuntimeError):
    """A verified checkpoint could not be written to the local checkpoint dir (local disk full, ...)."""


def durable_name(epoch: int, update: int, tag: str = "") -> str:
    return f"ckpt-e{epoch:04d}-u{update:09d}{'-' + tag if tag else ''}.pt"


def upload_temp(final: Path) -> Path:
    """The temp name ``final`` is copied to on home first (``TEMP`` matches it: a killed sync's is removed)."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


@dataclass(frozen=True)
class DurableCheckpoint:
    """One verified checkpoint on home, as its manifest describes it."""

    path: Path
    manifest: Path
    update: int
    epoch: int
    size: int
    digest: str  # "<algorithm>:<hex>" of the file's bytes (copying.Digest); "sha256:..." from older manifests
    synced_at: float
    source_name: str
    cloud: str | None = None  # "uploading" | "confirmed" | "estimated"; None: written before the cloud note
    cloud_at: float | None = None  # when its writer saw it reach the cloud (its own clock)
    upload_s: float | None = None  # how long that upload took, as its writer saw it
    boot_id: str = ""  # the VM that wrote it: only that VM's cache holds its upload, only it confirms it
    host: str = ""

    @property
    def in_cloud_recorded(self) -> bool:
        """The manifest says the checkpoint reached the cloud (or predates the note: counted as before)."""
        return self.cloud is None or self.cloud in IN_CLOUD_STATES

    @property
    def rank(self) -> tuple[int, int, str]:
        """Progress first: the highest update is the newest, whatever epoch or runtime wrote it."""
        return (self.update, self.epoch, self.path.name)


def read_manifest(manifest: Path) -> DurableCheckpoint | None:
    """The manifest's checkpoint if the manifest is well-formed and its file exists with the right size."""
    match = NAME.match(manifest.name)
    try:
        doc = read_json(manifest)
        path = manifest.with_suffix(".pt")
        durable = DurableCheckpoint(path, manifest, update=int(doc["update"]), epoch=int(doc["epoch"]),
                                    size=int(doc["size"]), digest=_digest_of(doc),
                                    synced_at=float(doc["synced_at"]),
                                    source_name=str(doc["source_name"]), **_cloud_of(doc))  # fmt: skip
        size = path.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable, half-uploaded (Drive) or file missing: not durable, whatever the reason
    if match is None or (int(match[1]), int(match[2])) != (durable.epoch, durable.update):
        return None
    if epoch_of(durable.epoch) is None or update_of(durable.update) is None:
        return None  # a hostile or corrupt manifest: no evidence of progress (readback.py)
    if size != durable.size or not _DIGEST.match(durable.digest):
        return None
    return durable


def _cloud_of(doc: Any) -> dict[str, Any]:
    """The manifest's cloud note and writer as DurableCheckpoint fields; absent in manifests written before."""
    note = doc.get("cloud")
    fields: dict[str, Any] = {"boot_id": str(doc.get("boot_id", "")), "host": str(doc.get("host", ""))}
    if isinstance(note, dict) and isinstance(note.get("state"), str):
        fields["cloud"] = note["state"]
        fields["cloud_at"] = float(note["at"]) if isinstance(note.get("at"), (int, float)) else None
        fields["upload_s"] = float(note["upload_s"]) if isinstance(note.get("upload_s"), (int, float)) else None
    return fields


def _digest_of(doc: Any) -> str:
    """The manifest's digest; format 1 manifests (before crc32) record a bare sha256."""
    if "digest" in doc:
        return str(doc["digest"])
    return f"sha256:{doc['sha256']}"


def write_manifest(durable: DurableCheckpoint) -> None:
    """Write the manifest that makes ``durable.path`` durable: only once that file is verified and renamed; again
    (``record_in_cloud``) once the store says it reached the cloud."""
    doc: dict[str, Any] = {
        "format": MANIFEST_FORMAT, "file": durable.path.name, "update": durable.update,
        "epoch": durable.epoch, "size": durable.size, "digest": durable.digest, "synced_at": durable.synced_at,
        "source_name": durable.source_name, "host": durable.host or socket.gethostname(),
        "boot_id": durable.boot_id}  # fmt: skip
    if durable.cloud is not None:
        doc["cloud"] = {"state": durable.cloud, "at": durable.cloud_at, "upload_s": durable.upload_s}
    atomic_write_json(durable.manifest, doc)


def record_in_cloud(durable: DurableCheckpoint, *, estimated: bool, at: float) -> DurableCheckpoint:
    """Rewrite ``durable``'s manifest to say its checkpoint reached the cloud at ``at``: the record other
    runtimes wait for. Only the VM whose cache held the upload calls this (its own file, its own boot id)."""
    done = replace(durable, cloud="estimated" if estimated else "confirmed", cloud_at=at,
                   upload_s=max(0.0, at - durable.synced_at))  # fmt: skip
    write_manifest(done)
    return done


def list_durable(home_ckpt_dir: Path) -> list[DurableCheckpoint]:
    """Valid manifests whose file exists with the right size, least to most progress (``rank``)."""
    try:
        names = os.listdir(home_ckpt_dir)
    except FileNotFoundError:
        return []
    found = [read_manifest(home_ckpt_dir / n) for n in names if n.endswith(".json") and NAME.match(n)]
    return sorted((d for d in found if d is not None), key=lambda d: d.rank)


def records(home_ckpt_dir: Path) -> list[Record]:
    """Every manifest in this view of home as a record, whether its file has arrived yet or not: a manifest is
    written only after its checkpoint verified, so each one proves that much progress was made durable; its
    cloud note says whether its writer saw that checkpoint reach the cloud. An unreadable one counts as in."""
    try:
        names = os.listdir(home_ckpt_dir)
    except OSError:
        return []
    found = []
    for name in names:
        match = NAME.match(name)
        if match is None or not name.endswith(".json") or (update := _update_in_name(match[2])) is None:
            continue
        try:
            doc = read_json(home_ckpt_dir / name)
            cloud = _cloud_of(doc)
        except (OSError, ValueError, TypeError, AttributeError):
            cloud = {"host": ""}
        state = cloud.get("cloud")
        found.append(Record(update, state is None or state in IN_CLOUD_STATES, cloud["host"], "manifest"))
    return found


def _update_in_name(digits: str) -> int | None:
    return update_of(int(digits)) if len(digits) <= len(str(MAX_UPDATE)) else None


def highest_durable_epoch(home_ckpt_dir: Path) -> int:
    """The highest epoch any checkpoint name shows: a new owner's epoch goes above it."""
    try:
        names = os.listdir(home_ckpt_dir)
    except OSError:
        return 0
    return max((e for n in names if (m := NAME.match(n)) and (e := epoch_in_name(m[1])) is not None), default=0)


def no_log(_event: str, **_fields: Any) -> None:
    return None


# ------------------------------------------------------------------------------------------------ restore
def restore(home_ckpt_dir: Path, local_dir: Path, log: Log | None = None, above: int = -1) -> DurableCheckpoint | None:
    """Copy the newest durable checkpoint that verifies to ``local_dir/model_last.pt`` (else older ones, down to
    ``above``, the update the local dir already holds: never replace it with an older one).

    Verified: the copy's size and digest match the manifest (each chunk read back and compared as it is
    copied), and it reads as a checkpoint at that update; one that does not is skipped (and logged) for the
    next older one. None when none verifies.
    Raises RestoreFailed on I/O errors (home unreadable, e.g. "Transport endpoint is not connected", or
    the local disk full): falling back to an older checkpoint, or to none, over a hiccup would lose progress.
    """
    log = log or no_log
    try:
        durables = list_durable(home_ckpt_dir)
    except OSError as err:
        cause = err.strerror or str(err)
        raise RestoreFailed(f"could not list {home_ckpt_dir} to restore a checkpoint: {cause}") from err
    local_dir.mkdir(parents=True, exist_ok=True)
    target = local_dir / LAST_NAME
    tmp = temp_copy_path(local_dir, LAST_NAME)  # prepare_resume removes it after a crash
    for durable in reversed(durables):
        if durable.update <= above:
            break
        try:
            reason = _restore_one(durable, tmp)
        except (OSError, ReadError) as err:
            cause = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            raise RestoreFailed(f"could not restore {durable.path} to {target}: {cause}") from err
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # gone already once it became model_last.pt
        if reason is not None:
            log("restore.skip", file=durable.path.name, reason=reason)
            continue
        fsync_dir(local_dir)
        log("restore.done", file=durable.path.name, update=durable.update, epoch=durable.epoch,
            size=durable.size)  # fmt: skip
        return durable
    return None


def _restore_one(durable: DurableCheckpoint, tmp: Path) -> str | None:
    """Copy one durable checkpoint over model_last.pt via ``tmp``; None, or why it does not verify (or holds
    non-finite weights: an older f5guard, or a user's own command, may have published one)."""
    known = finite.known_nonfinite(durable.digest)
    if known is not None:
        return known
    try:
        src_fd = os.open(durable.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return "it disappeared from home"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        size, digest = copy_fd(src_fd, tmp, algorithm=algorithm_of(durable.digest))
    except CopyMismatch as err:  # the local disk did not keep what was written: not home's fault
        raise OSError(f"the local copy did not read back as written ({err})") from err
    finally:
        os.close(src_fd)
    if (size, digest) != (durable.size, durable.digest):
        return f"content differs from its manifest ({size} bytes, {digest[:18]}…)"
    try:
        update = inspect_checkpoint(tmp, kind="last").update
    except CheckpointInvalid as err:
        return str(err)
    if update != durable.update:
        return f"holds update {update}, its manifest says {durable.update}"
    try:
        weights = finite.nonfinite(tmp)
    except CheckpointInvalid as err:
        return str(err)
    if weights is not None:
        finite.remember_digest(durable.digest, weights)
        return weights
    os.replace(tmp, tmp.with_name(LAST_NAME))
    finite.vouch(tmp.with_name(LAST_NAME))  # the same bytes under their new name: not read again by resume
    return None
