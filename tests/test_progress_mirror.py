"""The trainer's progress reaches home as it grows, in segments: each copy writes only the segment still filling,
never the whole history again (Drive uploads every rewritten file whole: 10-25 MB a day of training were
re-uploaded every minute), and only whole lines; `f5guard plot` reads the segments like any copy."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from f5guard.daemon.mirror import AppendMirror, Mirrorer
from f5guard.trainevents import EventWriter, Update, read_events


def test_segments_hold_the_file_once_and_closed_ones_are_never_rewritten(tmp_path: Path) -> None:
    local, home = tmp_path / "progress.jsonl", tmp_path / "home" / "progress"
    writer = EventWriter(local)
    mirror = AppendMirror(local, home, "e0001-rt", segment_bytes=4096)
    written = 0
    stamps: dict[str, int] = {}
    for rounds in range(6):
        for _ in range(40):
            written += 1
            writer.emit(Update(update=written, loss=0.5, updates_per_s=2.0))
        copied = mirror.step()
        assert 0 < copied <= local.stat().st_size
        segments = sorted(home.glob("e0001-rt-*.jsonl"))
        assert all(s.stat().st_size <= 4096 for s in segments)
        for closed in segments[:-1]:  # a closed segment keeps its inode and bytes from the moment it closed
            stamp = os.stat(closed).st_ino
            assert stamps.setdefault(closed.name, stamp) == stamp, f"{closed.name} rewritten in round {rounds}"
    writer.close()
    assert mirror.step() == 0, "nothing new: nothing written"
    segments = sorted(home.glob("e0001-rt-*.jsonl"))
    assert len(segments) > 3
    assert b"".join(s.read_bytes() for s in segments) == local.read_bytes()
    updates = [e.update for s in segments for e in read_events(s)[0] if isinstance(e, Update)]
    assert updates == list(range(1, written + 1))


def test_a_line_being_written_waits_and_a_replaced_file_goes_on_in_a_new_segment(tmp_path: Path) -> None:
    local, home = tmp_path / "progress.jsonl", tmp_path / "home"
    local.write_text('{"event": "update", "update": 1}\n{"event": "upd')
    mirror = AppendMirror(local, home, "s")
    mirror.step()
    assert (home / "s-000.jsonl").read_text() == '{"event": "update", "update": 1}\n'
    fresh = tmp_path / "fresh.jsonl"
    fresh.write_text(json.dumps({"event": "update", "update": 7}) + "\n")
    os.replace(fresh, local)  # another file under the same name (the work dir was made again)
    mirror.step()
    assert (home / "s-000.jsonl").read_text() == '{"event": "update", "update": 1}\n', "kept as it was"
    assert [e.update for e in read_events(home / "s-001.jsonl")[0] if isinstance(e, Update)] == [7]


def test_the_mirror_thread_copies_off_the_callers_thread_and_once_more_at_close() -> None:
    started, release = threading.Event(), threading.Event()
    copies: list[str] = []

    def copy() -> None:
        copies.append(threading.current_thread().name)
        started.set()
        release.wait(10)  # a Drive that blocks for a while

    mirror = Mirrorer(copy)
    mirror.request()
    assert started.wait(10)
    mirror.request()  # returns at once though a copy is stuck
    release.set()
    assert mirror.close(10)
    assert copies and set(copies) == {"f5guard-mirror"} and len(copies) >= 2
