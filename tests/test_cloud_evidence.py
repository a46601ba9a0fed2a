"""Is a file in the cloud? DriveFS's attributes read by name (real user.* xattrs here), the estimate where a mount
says nothing, which kind a home is, what records of checkpoints are worth, and the words status uses."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from f5guard.cloud import drivefs
from f5guard.cloud.detect import mount_of, open_store
from f5guard.cloud.evidence import DriveStore, LocalStore, Where, WritebackStore
from f5guard.cloud.note import final_line, lines
from f5guard.cloud.records import Record, from_state, judge, lost_line
from f5guard.state import CloudNote, TrainingRecord
from tests.drivesim import ITEM_ID, UNCOMMITTED, xattrs_work

needs_xattrs = pytest.mark.skipif(not xattrs_work(Path(os.environ.get("TMPDIR", "/tmp"))),
                                  reason="this file system keeps no user.* extended attributes")  # fmt: skip
SLOW = WritebackStore("test", delay_s=60, bytes_per_s=1e6)


def _file(tmp_path: Path, uncommitted: str | None, item: str | None, size: int = 10) -> Path:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"x" * size)
    if uncommitted is not None:
        os.setxattr(path, UNCOMMITTED, uncommitted.encode())
    if item is not None:
        os.setxattr(path, ITEM_ID, item.encode())
    return path


@needs_xattrs
@pytest.mark.parametrize(
    ("uncommitted", "item", "where", "estimated"),
    [
        ("1", "local-7", Where.UPLOADING, False),  # written, not uploaded
        ("0", "local-7", Where.UPLOADING, False),  # committed locally, no cloud item yet
        ("1", "1AbC", Where.UPLOADING, False),  # a rewrite still uploading
        ("0", "1AbC", Where.CLOUD, False),  # in the cloud
        ("0", None, Where.CLOUD, False),
        (None, "1AbC", Where.UPLOADING, True),  # an id alone proves nothing (a cloud file starts empty): estimate
        (None, None, Where.UPLOADING, True),  # no answer: estimated, and young
    ],
)
def test_drivefs_attributes_decide_what_is_in_the_cloud(
    tmp_path: Path, uncommitted: str | None, item: str | None, where: Where, estimated: bool
) -> None:
    """Read by name, as on Colab; a file without them falls back to an estimate, never to a yes."""
    seen = DriveStore("test", SLOW).look(_file(tmp_path, uncommitted, item))
    assert (seen.where, seen.estimated) == (where, estimated), seen.detail


def test_the_estimate_waits_for_age_and_size(tmp_path: Path) -> None:
    """writeback: in the cloud once age >= max(delay, size / rate): a 3 MB file at 40 kB/s needs 75 s, not 60."""
    path = tmp_path / "big.pt"
    path.write_bytes(b"x" * 3_000_000)
    store = WritebackStore("test", delay_s=60, bytes_per_s=40_000)
    for age, where in ((10, Where.UPLOADING), (70, Where.UPLOADING), (80, Where.CLOUD)):
        os.utime(path, (time.time() - age, time.time() - age))
        seen = store.look(path)
        assert seen.where is where and seen.estimated, (age, seen.detail)
    assert LocalStore("disk").look(path).in_cloud and not LocalStore("disk").look(path).estimated
    assert store.look(tmp_path / "gone.pt").where is Where.ABSENT


@needs_xattrs
def test_auto_picks_drive_where_the_attributes_answer_else_the_mount_kind(tmp_path: Path) -> None:
    """A plain disk is local; the same folder answering DriveFS's id is drive; a FUSE mount is writeback."""
    home = tmp_path / "home"
    home.mkdir()
    assert open_store(home / "not-yet", "auto", bytes_per_s=1, delay_s=1).kind == "local"
    os.setxattr(home, ITEM_ID, b"0Bfolder")
    assert drivefs.answers(home)
    assert open_store(home / "not-yet", "auto", bytes_per_s=1, delay_s=1).kind == "drive"
    assert open_store(home, "writeback", bytes_per_s=1, delay_s=1).estimated
    mounts = tmp_path / "mounts"
    for folder in ("my drive/x", "ntfs"):
        (tmp_path / folder).mkdir(parents=True)
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\nremote: {tmp_path}/my\\040drive fuse.rclone rw 0 0\n"
                      f"/dev/sdb1 {tmp_path}/ntfs fuseblk rw 0 0\n")  # fmt: skip
    rclone = mount_of(tmp_path / "my drive" / "x", mounts)
    assert rclone is not None and rclone.fstype == "fuse.rclone" and rclone.remote
    ntfs = mount_of(tmp_path / "ntfs", mounts)
    assert ntfs is not None and not ntfs.remote


def test_records_wait_only_for_what_reached_the_cloud() -> None:
    """Never backwards, but no waiting for a checkpoint that never left a dead VM; old records count as in."""
    confirmed, uploading = Record(200, True, "vm-a", "manifest"), Record(210, False, "vm-a", "manifest")
    assert judge([confirmed, uploading], have=200) == (j := judge([confirmed, uploading], have=200))
    assert j.wait_for is None and j.lost == uploading
    assert judge([confirmed, uploading], have=100).wait_for == confirmed, "in the cloud: it will arrive"
    assert judge([uploading], have=210).lost is None
    legacy = from_state(TrainingRecord(durable_update=300), "vm-old")
    assert legacy == [Record(300, True, "vm-old", "state")]
    note: CloudNote = _note(confirmed_update=200, host="vm-a")
    inherited = from_state(TrainingRecord(durable_update=210, cloud=note), "vm-b")  # B's copy of A's record
    assert inherited == [Record(200, True, "vm-a", "state"), Record(210, False, "vm-a", "state")]
    assert lost_line(uploading, 200) == (
        "u210 never left vm-a (still uploading when it stopped); resuming from u200, the newest that reached Drive"
    )


def _note(**fields: object) -> CloudNote:
    base: CloudNote = {"kind": "drive", "how": "test", "host": "vm", "confirmed_update": None, "confirmed_at": None,
                       "confirmed_estimated": False, "uploading_update": None, "uploading_since": None,
                       "uploading_bytes": None, "rate_bytes_per_s": None, "rate_measured": False,
                       "held_back": None, "lost": None}  # fmt: skip
    return {**base, **fields}  # type: ignore[typeddict-item]


def test_status_words_tell_cloud_from_uploading() -> None:
    """The lines of 15's item 6, and the final line at stop."""
    now = time.mktime((2026, 1, 2, 21, 30, 0, 0, 0, -1))
    note = _note(confirmed_update=3000, confirmed_at=now - 20 * 60, uploading_update=4000,
                 uploading_since=now - 12 * 60, uploading_bytes=int(5.4e9), rate_bytes_per_s=2.1e6,
                 rate_measured=True, held_back=4500)  # fmt: skip
    assert lines(note, now) == [
        "newest in the cloud: u3000 (confirmed 21:10)",
        "on Drive, uploading: u4000 (12 min so far, ~2.1 MB/s, ~30 min left)",
        "u4500 waits on this VM until that upload is done (one upload at a time)",
    ]
    stalled = {**note, "uploading_since": now - 3 * 3600}
    assert "overdue: Drive may have stalled" in lines(stalled, now)[1]  # type: ignore[arg-type]
    assert final_line(note, 4000, 4000, now).startswith(
        "the final checkpoint u4000 is on Drive, still uploading: u4000 (12 min so far"
    )
    assert final_line(note, 3000, 4000, now) == "the final checkpoint u3000 is in the cloud: u3000 (confirmed 21:10)"
    assert final_line(note, 4600, 4000, now).startswith("the final checkpoint u4600 is only on this VM")
    assert final_line(_note(kind="local"), 10, 10, now) == "the final checkpoint u10 is safe on home"
    assert lines(_note(kind="local"), now) == []
