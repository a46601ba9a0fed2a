"""The sync on a Drive home, the test playing DriveFS (it sets the upload attributes a real mount would): one
upload at a time, a manifest that says when its checkpoint reached the cloud, retention by that evidence."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from f5guard.checkpoints.durable import list_durable
from f5guard.checkpoints.sync import CheckpointSync
from f5guard.cloud.evidence import DriveStore, WritebackStore
from tests.drive_runtime import write_checkpoint
from tests.drivesim import ITEM_ID, UNCOMMITTED, stable_id, xattrs_work

pytestmark = pytest.mark.skipif(not xattrs_work(Path(os.environ.get("TMPDIR", "/tmp"))),
                                reason="this file system keeps no user.* extended attributes")  # fmt: skip

STORE = DriveStore("test: the test plays DriveFS", WritebackStore("no answer", delay_s=3600, bytes_per_s=1))


def _until(what: str, check: Callable[[], object], timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def _upload(path: Path) -> None:
    """DriveFS finished uploading ``path``: uncommitted 0, a cloud id."""
    os.setxattr(path, UNCOMMITTED, b"0")
    os.setxattr(path, ITEM_ID, stable_id(path.name).encode())


def _cloud(manifest: Path) -> str | None:
    try:
        return str((json.loads(manifest.read_text()).get("cloud") or {}).get("state"))
    except FileNotFoundError:
        return None


@pytest.fixture
def sync(tmp_path: Path) -> Iterator[CheckpointSync]:
    made = CheckpointSync(tmp_path / "local", tmp_path / "home", epoch=1, keep=1, polling=True, tag="0000abcd",
                          store=STORE, poll_s=0.05)  # fmt: skip
    try:
        yield made
    finally:
        made.stop()


def test_one_upload_at_a_time_recorded_then_retained_by_evidence(sync: CheckpointSync) -> None:
    """u10 goes to home and uploads; u20, saved meanwhile, waits on the VM (status says so). Once u10 is in the
    cloud its manifest says "confirmed", and once that manifest is in the cloud too u20 goes; u10 is deleted
    only when u20 is in the cloud with its record, never before."""
    local, home = sync.local_dir, sync.home
    write_checkpoint(local / "model_10.pt", 10)
    sync.start()
    first = _until("u10 on home", lambda: next(iter(list_durable(home)), None))
    assert first.cloud == "uploading"  # type: ignore[attr-defined]
    write_checkpoint(local / "model_20.pt", 20)
    sync.request()
    note = _until("u20 held back", lambda: (c := sync.status().cloud) and c["held_back"] == 20 and c)
    assert note["uploading_update"] == 10 and note["confirmed_update"] is None  # type: ignore[index]
    time.sleep(0.3)
    assert [d.update for d in list_durable(home)] == [10], "no second upload while the first is on its way"

    _upload(first.path)  # type: ignore[attr-defined]
    _until("u10's manifest to say so", lambda: _cloud(first.manifest) == "confirmed")  # type: ignore[attr-defined]
    time.sleep(0.3)
    assert [d.update for d in list_durable(home)] == [10], "its record is not in the cloud yet: still one at a time"
    _upload(first.manifest)  # type: ignore[attr-defined]
    second = _until("u20 on home", lambda: next((d for d in list_durable(home) if d.update == 20), None))
    time.sleep(0.3)
    assert [d.update for d in list_durable(home)] == [10, 20], "u10 stays while u20 uploads (keep = 1)"
    assert sync.status().cloud["confirmed_update"] == 10  # type: ignore[index]

    _upload(second.path)  # type: ignore[attr-defined]
    _until("u20 confirmed", lambda: _cloud(second.manifest) == "confirmed")  # type: ignore[attr-defined]
    _upload(second.manifest)  # type: ignore[attr-defined]
    _until("u10 deleted", lambda: [d.update for d in list_durable(home)] == [20])
    note = _until("status", lambda: (c := sync.status().cloud) and c["confirmed_update"] == 20 and c)
    assert note["uploading_update"] is None and note["held_back"] is None  # type: ignore[index]
    assert note["rate_measured"] and note["rate_bytes_per_s"]  # type: ignore[index]


def test_the_final_checkpoint_goes_at_a_stop_even_while_another_uploads(sync: CheckpointSync) -> None:
    """flush (a graceful stop, the end of training) does not wait for the upload in flight: the final checkpoint
    is what the next runtime resumes from."""
    write_checkpoint(sync.local_dir / "model_10.pt", 10)
    sync.start()
    _until("u10 on home", lambda: list_durable(sync.home))
    write_checkpoint(sync.local_dir / "model_20.pt", 20)
    assert sync.flush(10)
    assert [(d.update, d.cloud) for d in list_durable(sync.home)] == [(10, "uploading"), (20, "uploading")]
