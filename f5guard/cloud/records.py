"""What the records on home (checkpoint manifests, state copies) prove about progress, and whether a runtime
must wait for a checkpoint it cannot see yet (never backwards) or may resume below it.

A record names a durable checkpoint and says whether its writer saw it reach the cloud. One that did will
arrive here: wait for it. One that was still uploading when its runtime stopped never left that VM: waiting
for it would wait for nothing (30 minutes, then a person typing ``--accept-older``), so the runtime resumes at
once from the newest that did, and says so. Records written before f5guard knew cache from cloud count as in
the cloud: the old promise, kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from f5guard.state import TrainingRecord

IN_CLOUD_STATES = frozenset({"confirmed", "estimated"})  # what a record's cloud state may say once uploaded


@dataclass(frozen=True)
class Record:
    """One record of a durable checkpoint."""

    update: int
    in_cloud: bool  # its writer saw it in the cloud (confirmed or estimated), or the record predates the note
    writer: str  # the host that wrote it ("" when unknown)
    source: str  # "manifest" or "state"


@dataclass(frozen=True)
class Judgement:
    """What to do about records newer than the checkpoint here."""

    wait_for: Record | None  # the newest record in the cloud above what is here: it will arrive
    lost: Record | None  # the newest record above what is here (and above ``wait_for``) that never left its VM


def judge(records: Iterable[Record], have: int) -> Judgement:
    """``have``: the newest update this runtime holds (0: only the pretrained model)."""
    above = [r for r in records if r.update > have]
    arriving = max((r for r in above if r.in_cloud), key=lambda r: r.update, default=None)
    floor = arriving.update if arriving is not None else have
    lost = max((r for r in above if not r.in_cloud and r.update > floor), key=lambda r: r.update, default=None)
    return Judgement(arriving, lost)


def lost_line(lost: Record, have: int) -> str:
    """The one line a runtime says when it resumes below a checkpoint that never reached the cloud."""
    where = lost.writer or "its VM"
    start = f"from u{have}, the newest that reached Drive"
    if have <= 0:
        start = "from the pretrained model: no checkpoint reached Drive"
    return f"u{lost.update} never left {where} (still uploading when it stopped); resuming {start}"


def from_state(training: TrainingRecord, host: str) -> list[Record]:
    """A state copy's records: the newest checkpoint its writer saw in the cloud, and its newest durable one
    when that one was still uploading. A copy written before the cloud note counts its durable one as in.
    ``host`` wrote the copy; the note names the VM that saw the upload (a new runtime inherits the record)."""
    cloud = training.cloud
    durable = None if training.durable_update is None else int(training.durable_update)
    if not isinstance(cloud, dict):
        return [] if durable is None else [Record(durable, True, host, "state")]
    host = str(cloud.get("host") or host)
    confirmed = cloud.get("confirmed_update")
    found = [] if confirmed is None else [Record(int(confirmed), True, host, "state")]
    if durable is not None and (confirmed is None or durable > int(confirmed)):
        found.append(Record(durable, False, host, "state"))
    return found
