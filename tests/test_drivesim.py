"""The Drive model the lagging-home tests stand on: late, reordered, last-writer-wins, lossy on a dead VM."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.drivesim import Delays, DriveSim, Event

QUICK = Delays(0.05, 0.2)
BIG_IS_SLOW = Delays(0.05, 0.1, bytes_per_s=1_000_000)  # the 400 kB files below: +0.4 s
POLL_S = 0.05


Match = Callable[[Event], bool]


def _put(path: Path, data: bytes) -> None:
    """Make ``path`` appear whole (written beside the views, then renamed in): each write is one version."""
    views = next(p for p in path.parents if p.name == "views")
    tmp = views.parent / f".put-{uuid.uuid4().hex}"  # on the views' filesystem, outside every view
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _changed(view: str, path: str) -> Match:
    return lambda e: e.kind == "changed" and e.view == view and e.path == path


def _uploaded(path: str) -> Match:
    return lambda e: e.kind == "uploaded" and e.path == path


def _downloaded(view: str, path: str) -> Match:
    return lambda e: e.kind == "downloaded" and e.view == view and e.path == path


def test_a_change_reaches_the_cloud_then_the_other_views(tmp_path: Path) -> None:
    """A file in a nested folder of A arrives in the cloud and in B and C, with A's mtime, not in A twice."""
    with DriveSim(tmp_path, ["A", "B", "C"], upload=QUICK, seed=1, poll_s=POLL_S) as sim:
        (sim.view("A") / "runs" / "r").mkdir(parents=True)
        src = sim.view("A") / "runs" / "r" / "f.txt"
        _put(src, b"hello")
        mtime = src.stat().st_mtime_ns
        sim.wait_quiescent(timeout=10)
        for where in (sim.cloud, sim.view("B"), sim.view("C")):
            copy = where / "runs" / "r" / "f.txt"
            assert copy.read_text() == "hello" and copy.stat().st_mtime_ns == mtime
        kinds = [(e.kind, e.view) for e in sim.events(path="runs/r/f.txt")]
        assert kinds[:2] == [("changed", "A"), ("uploaded", "cloud")]
        assert sorted(kinds[2:]) == [("downloaded", "B"), ("downloaded", "C")], "never echoed back to A"


def test_a_later_small_file_overtakes_an_earlier_big_one(tmp_path: Path) -> None:
    """Delay grows with size: a manifest written after a big checkpoint reaches the cloud and B first."""
    with DriveSim(tmp_path, ["A", "B"], upload=BIG_IS_SLOW, seed=2, poll_s=POLL_S) as sim:
        _put(sim.view("A") / "big.pt", b"x" * 400_000)
        sim.wait_event(_changed("A", "big.pt"))  # queued before the small one is even written
        _put(sim.view("A") / "small.json", b"{}")
        sim.wait_quiescent(timeout=15)
        changed = [e.path for e in sim.events("changed", "A")]
        uploaded = [e.path for e in sim.events("uploaded")]
        arrived_b = [e.path for e in sim.events("downloaded", "B")]
        assert changed == ["big.pt", "small.json"]
        assert uploaded == ["small.json", "big.pt"]
        assert arrived_b == ["small.json", "big.pt"]
        assert (sim.view("B") / "big.pt").stat().st_size == 400_000


def test_deletes_reach_the_cloud_and_the_other_views(tmp_path: Path) -> None:
    """A delete in one view removes the file from the cloud, then from every other view."""
    with DriveSim(tmp_path, ["A", "B"], upload=QUICK, seed=3, poll_s=POLL_S) as sim:
        (sim.view("A") / "d").mkdir()
        _put(sim.view("A") / "d" / "old.pt", b"old")
        sim.wait_event(_downloaded("B", "d/old.pt"), timeout=10)
        (sim.view("A") / "d" / "old.pt").unlink()
        sim.wait_quiescent(timeout=10)
        assert not (sim.cloud / "d" / "old.pt").exists()
        assert not (sim.view("B") / "d" / "old.pt").exists()
        assert [e.op for e in sim.events("downloaded", "B")] == ["write", "delete"]


def test_a_delete_can_overtake_the_upload_of_its_successor(tmp_path: Path) -> None:
    """The retention hazard of issue 8: new big file, then delete of the old one; the cloud briefly has neither."""
    with DriveSim(tmp_path, ["A"], upload=BIG_IS_SLOW, seed=4, poll_s=POLL_S) as sim:
        _put(sim.view("A") / "old.pt", b"o" * 1000)
        sim.wait_quiescent(timeout=10)
        _put(sim.view("A") / "new.pt", b"n" * 400_000)
        sim.wait_event(_changed("A", "new.pt"))
        (sim.view("A") / "old.pt").unlink()
        sim.wait_event(lambda e: e.kind == "uploaded" and e.op == "delete", timeout=10)
        with sim.hold():
            assert sorted(os.listdir(sim.cloud)) == [], "neither the old nor the new checkpoint in the cloud"
        sim.wait_quiescent(timeout=10)
        assert sorted(os.listdir(sim.cloud)) == ["new.pt"]


def test_last_writer_by_mtime_wins_whatever_the_arrival_order(tmp_path: Path) -> None:
    """A writes first (a big, slow version), B writes later (small, fast): B's arrives first, A's late one is
    dropped in the cloud, and every view ends with B's."""
    with DriveSim(tmp_path, ["A", "B", "C"], upload=BIG_IS_SLOW, seed=5, poll_s=POLL_S) as sim:
        _put(sim.view("A") / "state.json", b"A" * 400_000)
        sim.wait_event(_changed("A", "state.json"))
        _put(sim.view("B") / "state.json", b"B")
        sim.wait_quiescent(timeout=15)
        for where in (sim.cloud, sim.view("A"), sim.view("B"), sim.view("C")):
            assert (where / "state.json").read_bytes() == b"B", where
        superseded = sim.events("superseded", path="state.json")
        assert [e.origin for e in superseded] == ["A"]


def test_an_older_download_never_replaces_a_newer_local_write(tmp_path: Path) -> None:
    """B rewrites the file after A's version left for the cloud: A's arrival at B is stale, B's wins in A."""
    with DriveSim(
        tmp_path, ["A", "B"], upload=Delays(0.3, 0.4), download=Delays(0.3, 0.4), seed=6, poll_s=POLL_S
    ) as sim:
        _put(sim.view("A") / "marker", b"A")
        sim.wait_event(_uploaded("marker"))  # on its way to B: due there in 0.3-0.4 s
        _put(sim.view("B") / "marker", b"B")
        sim.wait_quiescent(timeout=10)
        assert (sim.view("A") / "marker").read_text() == "B"
        assert (sim.view("B") / "marker").read_text() == "B"
        assert [e.origin for e in sim.events("stale", "B", "marker")] == ["A"]


def test_a_killed_view_loses_what_it_had_not_uploaded(tmp_path: Path) -> None:
    """What reached the cloud stays; the VM's last writes and deletes vanish with it."""
    with DriveSim(tmp_path, ["A", "B"], upload=Delays(0.6, 0.8), download=QUICK, seed=7, poll_s=POLL_S) as sim:
        _put(sim.view("A") / "kept.pt", b"k")
        sim.wait_event(_downloaded("B", "kept.pt"), timeout=10)
        _put(sim.view("A") / "last.pt", b"l")
        (sim.view("A") / "kept.pt").unlink()
        sim.wait_event(lambda e: e.kind == "deleted" and e.path == "kept.pt", timeout=5)
        assert sim.kill_view("A") == 2
        sim.wait_quiescent(timeout=10)
        assert sorted(e.path for e in sim.events("lost")) == ["kept.pt", "last.pt"]
        assert sorted(os.listdir(sim.cloud)) == ["kept.pt"]
        assert sorted(os.listdir(sim.view("B"))) == ["kept.pt"]
        _put(sim.view("A") / "after.pt", b"a")  # a dead VM's disk: never read again
        time.sleep(0.5)
        assert not (sim.cloud / "after.pt").exists()


def test_a_paused_view_neither_sends_nor_receives_until_resumed(tmp_path: Path) -> None:
    """A frozen VM's Drive client: nothing leaves or reaches it until it resumes, then all at once."""
    with DriveSim(tmp_path, ["A", "B"], upload=QUICK, seed=8, poll_s=POLL_S) as sim:
        sim.pause("B")
        _put(sim.view("A") / "from-a", b"a")
        _put(sim.view("B") / "from-b", b"b")
        sim.wait_event(_uploaded("from-a"), timeout=10)
        time.sleep(0.5)
        assert not (sim.view("B") / "from-a").exists()
        assert not (sim.cloud / "from-b").exists()
        sim.resume("B")
        assert (sim.view("B") / "from-a").read_text() == "a", "what fell due meanwhile arrives as it resumes"
        sim.wait_quiescent(timeout=10)
        assert (sim.view("A") / "from-b").read_text() == "b"


def test_a_new_view_receives_what_the_cloud_holds(tmp_path: Path) -> None:
    """A VM that mounts the Drive later gets every file the cloud holds."""
    with DriveSim(tmp_path, ["A"], upload=QUICK, seed=9, poll_s=POLL_S) as sim:
        _put(sim.view("A") / "x", b"x")
        sim.wait_quiescent(timeout=10)
        sim.add_view("B")
        sim.wait_event(_downloaded("B", "x"), timeout=10)
        assert (sim.view("B") / "x").read_text() == "x"


def test_readers_never_see_a_half_copied_file(tmp_path: Path) -> None:
    """The replicator writes temp + rename: every read in B is one complete version of A's rewrites."""
    size = 300_000
    seen: list[bytes] = []
    stop = threading.Event()
    with DriveSim(tmp_path, ["A", "B"], upload=Delays(0.05, 0.1), poll_s=POLL_S, seed=10) as sim:
        target = sim.view("B") / "ckpt.pt"

        def read() -> None:
            while not stop.is_set():
                try:
                    seen.append(target.read_bytes())
                except FileNotFoundError:
                    time.sleep(0.001)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for n in range(8):
                tmp = sim.view("A") / ".tmp"
                tmp.write_bytes(bytes([65 + n]) * size)
                os.replace(tmp, sim.view("A") / "ckpt.pt")
                time.sleep(0.12)
            sim.wait_quiescent(timeout=10)
        finally:
            stop.set()
            reader.join()
    assert seen
    assert all(len(data) == size and data == data[:1] * size for data in seen)
    assert seen[-1][:1] == b"H"


def test_listeners_run_before_anything_else_moves(tmp_path: Path) -> None:
    """A listener that kills a view when a delete reaches the cloud stops that view's next upload."""
    calls: list[Event] = []
    with DriveSim(tmp_path, ["A", "B"], upload=BIG_IS_SLOW, seed=11, poll_s=POLL_S) as sim:
        _put(sim.view("A") / "old", b"o")
        sim.wait_quiescent(timeout=10)

        def on_event(event: Event) -> None:
            calls.append(event)
            if event.kind == "uploaded" and event.op == "delete":
                sim.kill_view("A")

        sim.listen(on_event)
        _put(sim.view("A") / "new", b"n" * 400_000)
        sim.wait_event(_changed("A", "new"))
        (sim.view("A") / "old").unlink()
        sim.wait_event(lambda e: e.kind == "killed", timeout=10)
        sim.wait_quiescent(timeout=10)
        assert [e.path for e in sim.events("lost")] == ["new"]
        assert os.listdir(sim.cloud) == []
        assert calls


def test_drivefs_attributes_on_the_writers_view_follow_its_upload(tmp_path: Path) -> None:
    """DriveFS's upload state, as f5guard reads it (cloud/evidence.py): A's new file is uploading (uncommitted 1,
    a local- id) until its upload lands, then in the cloud (0, a stable id); B's download arrives in the cloud;
    C, a mount without the attributes, gives no answer (f5guard then estimates); ``uploading`` lists what A
    would lose if it died."""
    from f5guard.cloud import drivefs
    from f5guard.cloud.evidence import DriveStore, Where, WritebackStore

    slow = Delays(0.05, 0.1, bytes_per_s=400_000)  # 400 kB: about a second
    store = DriveStore("test", WritebackStore("test", delay_s=3600, bytes_per_s=1))
    with DriveSim(tmp_path, ["A", "B", "C"], upload=slow, seed=3, poll_s=POLL_S, drivefs=["A", "B"]) as sim:
        assert drivefs.answers(sim.view("A")) and not drivefs.answers(sim.view("C"))
        src = sim.view("A") / "ckpt.pt"
        _put(src, b"x" * 400_000)
        sim.wait_event(_changed("A", "ckpt.pt"), timeout=5)
        seen = drivefs.ask(src)
        assert seen is not None and seen.uploading and seen.item_id.startswith("local-")
        assert store.look(src).where is Where.UPLOADING
        assert sim.uploading("A", "*.pt") == ["ckpt.pt"]
        sim.wait_event(_uploaded("ckpt.pt"), timeout=10)
        done = drivefs.ask(src)
        assert done is not None and done.in_cloud and not done.item_id.startswith("local-")
        assert store.look(src).in_cloud and not store.look(src).estimated
        assert sim.uploading("A") == []
        sim.wait_event(_downloaded("B", "ckpt.pt"), timeout=10)
        sim.wait_event(_downloaded("C", "ckpt.pt"), timeout=10)
        assert drivefs.ask(sim.view("B") / "ckpt.pt") == done, "the same item, committed, in every view"
        assert drivefs.ask(sim.view("C") / "ckpt.pt") is None
        fallback = store.look(sim.view("C") / "ckpt.pt")
        assert fallback.estimated and fallback.where is Where.UPLOADING, "no answer: an estimate, not a yes"
