"""This VM's checkpoints on home until the cloud has them, on the store's evidence (f5guard/cloud/).

On Drive a checkpoint in the mount is only in the VM's cache; it uploads at its own pace (a 5.4 GB one for tens
of minutes) and dies with the VM until it has. ``Uploads`` reads the store's answer for each checkpoint this VM
wrote, and:

- *records* it: once the file is in the cloud, its manifest is rewritten to say so (``confirmed``, or
  ``estimated`` on a mount without evidence), and once that manifest is in the cloud too the checkpoint counts
  as *in the cloud* for everyone: retention may then delete its predecessor, and another runtime waits for it;
- *paces* the sync: ``busy`` names the checkpoint still on its way, and no new full checkpoint is pushed into
  the mount meanwhile (uploads never pile up in DriveFS's cache, which fills the VM's disk);
- *measures* the upload rate (size over the time from rename to confirmation).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from f5guard.checkpoints.durable import DurableCheckpoint, Log, record_in_cloud
from f5guard.cloud.evidence import Evidence, Store, Where
from f5guard.machine import hostname
from f5guard.state import CloudNote


@dataclass(frozen=True)
class Standing:
    """One durable checkpoint against the cloud, as one pass saw it."""

    durable: DurableCheckpoint
    file: Evidence  # the checkpoint file's
    recorded: bool  # in the cloud with a manifest there that says so: retention may rely on it


class Uploads:
    """Tracks the checkpoints on home for one sync; not thread-safe (the sync's worker calls it)."""

    def __init__(self, store: Store, *, boot_id: str, fence: Callable[[], None], log: Log,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.store = store
        self.boot_id = boot_id
        self._fence, self._log, self._clock = fence, log, clock
        self._recorded: set[str] = set()  # manifest names known recorded in the cloud: not looked at again
        self._standings: list[Standing] = []
        self._rate: float | None = None
        self._measured = False

    def ours(self, durable: DurableCheckpoint) -> bool:
        """Written on this VM: only its cache holds the upload, only it can confirm it."""
        return bool(self.boot_id) and durable.boot_id == self.boot_id

    def refresh(self, durables: list[DurableCheckpoint]) -> bool:
        """Look at every checkpoint not yet known in the cloud; record those that reached it (a fenced manifest
        write: raises what ``fence`` raises). True when a manifest was rewritten (list home again)."""
        changed = False
        standings: list[Standing] = []
        for seen in durables:
            if seen.manifest.name in self._recorded:
                standings.append(Standing(seen, Evidence(Where.CLOUD), True))
                continue
            file = self.store.look(seen.path)
            durable = seen
            if self.ours(seen) and file.in_cloud and not seen.in_cloud_recorded:
                durable = self._record(seen, file)
                changed = True
            recorded = file.in_cloud and durable.in_cloud_recorded and self.store.look(durable.manifest).in_cloud
            if recorded:
                self._recorded.add(durable.manifest.name)
            standings.append(Standing(durable, file, recorded))
        self._standings = standings
        return changed

    def _record(self, durable: DurableCheckpoint, file: Evidence) -> DurableCheckpoint:
        self._fence()
        at = file.at if file.at is not None else self._clock()
        done = record_in_cloud(durable, estimated=file.estimated, at=at)
        seconds = done.upload_s or 0.0
        if not file.estimated and seconds > 0:
            self._rate, self._measured = durable.size / seconds, True
        self._log("sync.in_cloud", file=durable.path.name, update=durable.update, seconds=round(seconds, 1),
                  estimated=file.estimated, detail=file.detail)  # fmt: skip
        return done

    def busy(self) -> DurableCheckpoint | None:
        """The newest checkpoint of this VM not yet recorded in the cloud: while there is one, no new one is
        pushed into the mount (pacing)."""
        pending = [s.durable for s in self._standings if self.ours(s.durable) and not s.recorded]
        return pending[-1] if pending else None

    def pending(self) -> bool:
        """Something of this VM is still on its way: look again in ``poll_s``, not in a minute."""
        return self.busy() is not None

    def recorded(self, durable: DurableCheckpoint) -> bool:
        """In the cloud with its record (retention: a predecessor goes only once a successor is)."""
        return durable.manifest.name in self._recorded

    def note(self, held_back: int | None) -> CloudNote:
        """What status shows: the newest checkpoint in the cloud, the newest still uploading, the rate."""
        rate = self._rate if self._rate is not None else self.store.presumed_bytes_per_s
        return describe(self.store, self._standings, rate=rate, measured=self._measured, held_back=held_back)


def look(store: Store, durables: list[DurableCheckpoint]) -> list[Standing]:
    """Each checkpoint's standing, read only (status with or without a daemon): newest first until one is in
    the cloud, the older ones counted in without a look (only the newest in the cloud matters to status)."""
    found: list[Standing] = []
    for durable in reversed(durables):
        file = store.look(durable.path)
        found.append(Standing(durable, file, file.in_cloud and durable.in_cloud_recorded))
        if file.in_cloud:
            break
    return found[::-1]


def describe(store: Store, standings: list[Standing], *, rate: float | None, measured: bool,
             held_back: int | None) -> CloudNote:  # fmt: skip
    """The note for ``standings`` (least to most progress)."""
    confirmed = next((s for s in reversed(standings) if s.file.in_cloud), None)
    newest = standings[-1] if standings else None
    uploading = newest if newest is not None and newest.file.where is Where.UPLOADING else None
    at = None
    if confirmed is not None:
        at = confirmed.durable.cloud_at or confirmed.file.at
    estimated = confirmed is not None and (confirmed.file.estimated or confirmed.durable.cloud == "estimated")
    return CloudNote(
        kind=store.kind,
        how=store.how,
        host=hostname(),
        confirmed_update=confirmed.durable.update if confirmed else None,
        confirmed_at=at,
        confirmed_estimated=estimated,
        uploading_update=uploading.durable.update if uploading else None,
        uploading_since=uploading.durable.synced_at if uploading else None,
        uploading_bytes=uploading.durable.size if uploading else None,
        rate_bytes_per_s=rate,
        rate_measured=measured,
        held_back=held_back,
        lost=None,
    )
