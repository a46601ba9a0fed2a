"""Verified checkpoint sync to home and restore from it, on real files and real torch.save checkpoints."""
# ruff: noqa: F811  (pytest fixtures imported from tests.sync_support come back as parameters)

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from f5guard.checkpoints import publish
from f5guard.checkpoints.copying import file_digest
from f5guard.checkpoints.durable import list_durable, restore
from f5guard.checkpoints.inspect import inspect_checkpoint
from f5guard.checkpoints.sync import CheckpointSync
from f5guard.errors import LeaseLost
from tests.sync_support import CheckpointMaker, Recorder, home_names, maker, wait_until  # noqa: F401 - fixtures

pytestmark = pytest.mark.train
MB = 1024 * 1024


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    local = tmp_path / "work" / "ckpts"
    local.mkdir(parents=True)
    return local, tmp_path / "home" / "runs" / "r" / "checkpoints"


def test_sync_then_restore_round_trip(maker: CheckpointMaker, dirs: tuple[Path, Path],
                                      tmp_path: Path) -> None:  # fmt: skip
    """A synced checkpoint has a manifest matching its bytes, and restores to an identical model_last.pt."""
    local, home = dirs
    source = maker.make(local / "model_last.pt", 10, 2 * MB)
    syncer = CheckpointSync(local, home, epoch=3)
    syncer.start()
    try:
        assert syncer.flush(30)
        status = syncer.status()
    finally:
        syncer.stop()
    assert home_names(home) == ["ckpt-e0003-u000000010.json", "ckpt-e0003-u000000010.pt"]
    manifest = json.loads((home / "ckpt-e0003-u000000010.json").read_text())
    assert manifest["update"] == 10
    assert manifest["epoch"] == 3
    assert manifest["source_name"] == "model_last.pt"
    assert manifest["size"] == source.stat().st_size
    assert manifest["format"] == 2
    assert manifest["digest"] == file_digest(source) == file_digest(home / "ckpt-e0003-u000000010.pt")
    assert manifest["digest"].startswith("crc32:")
    assert manifest["host"]
    assert manifest["synced_at"] > 0
    assert status.durable is not None
    assert status.durable.update == 10
    assert status.last_error is None
    assert status.last_sync_s is not None
    assert status.bytes_per_s

    fresh = tmp_path / "fresh-vm" / "ckpts"
    log = Recorder()
    restored = restore(home, fresh, log=log)
    assert restored == list_durable(home)[-1]
    assert file_digest(fresh / "model_last.pt") == manifest["digest"]
    assert inspect_checkpoint(fresh / "model_last.pt").update == 10
    assert sorted(os.listdir(fresh)) == ["model_last.pt"]  # no temp left behind
    assert "restore.done" in log.names()


def test_only_newer_checkpoints_are_copied(maker: CheckpointMaker, dirs: tuple[Path, Path]) -> None:
    """Nothing is copied twice; at equal update the numbered file (never rewritten) is the source."""
    local, home = dirs
    maker.make(local / "model_20.pt", 20)
    maker.make(local / "model_last.pt", 20)
    maker.make(local / "model_10.pt", 10)
    log = Recorder()
    syncer = CheckpointSync(local, home, epoch=1, log=log)
    assert syncer.flush(30)
    assert syncer.flush(30)
    assert [f["source"] for name, f in log.events if name == "sync.done"] == ["model_20.pt"]
    assert [d.update for d in list_durable(home)] == [20]


def test_retention_keeps_the_newest_k(maker: CheckpointMaker, dirs: tuple[Path, Path]) -> None:
    """keep=2 holds the two newest durable checkpoints; lowering keep to 1 trims at the next start."""
    local, home = dirs
    syncer = CheckpointSync(local, home, epoch=1, keep=2)
    for update in (10, 20, 30):
        maker.make(local / "model_last.pt", update)
        assert syncer.flush(30)
    assert [d.update for d in list_durable(home)] == [20, 30]
    assert len(home_names(home)) == 4
    maker.make(local / "model_last.pt", 40)
    assert CheckpointSync(local, home, epoch=1, keep=1).flush(30)
    assert [d.update for d in list_durable(home)] == [40]
    assert home_names(home) == ["ckpt-e0001-u000000040.json", "ckpt-e0001-u000000040.pt"]


def test_the_old_checkpoint_is_deleted_only_after_its_successor_is_durable(
        maker: CheckpointMaker, dirs: tuple[Path, Path]) -> None:  # fmt: skip
    """At the moment of every deletion, home already holds the successor, complete and matching its source."""
    local, home = dirs
    seen: list[tuple[int, bool]] = []

    def check(event: str, fields: dict) -> None:
        if event == "sync.deleted":
            newest = list_durable(home)[-1]
            seen.append((newest.update, file_digest(newest.path) == newest.digest == file_digest(source)))

    syncer = CheckpointSync(local, home, epoch=1, keep=1, log=Recorder(check))
    syncer.start()
    try:
        for update in (10, 20, 30):
            source = maker.make(local / f"model_{update}.pt", update)
            wait_until(lambda u=update: (s := syncer.status().durable) and s.update == u,
                       what=f"update {update}")  # fmt: skip
    finally:
        syncer.stop()
    assert seen == [(20, True), (30, True)]
    assert [d.update for d in list_durable(home)] == [30]


def test_a_takeover_never_deletes_more_progress_than_it_has(maker: CheckpointMaker, dirs: tuple[Path, Path],
                                                            tmp_path: Path) -> None:  # fmt: skip
    """Epoch 2, restarted from an older point, keeps epoch 1's further-trained checkpoint till passed: progress
    ranks by update, not epoch, so its own less-trained checkpoint is not even published meanwhile."""
    local, home = dirs
    maker.make(local / "model_last.pt", 50)
    assert CheckpointSync(local, home, epoch=1).flush(30)
    second = tmp_path / "vm2"
    second.mkdir()
    maker.make(second / "model_last.pt", 10)
    syncer = CheckpointSync(second, home, epoch=2)
    assert syncer.flush(30)
    assert [(d.epoch, d.update) for d in list_durable(home)] == [(1, 50)]
    assert restore(home, tmp_path / "vm3") is not None and list_durable(home)[-1].update == 50
    maker.make(second / "model_last.pt", 60)
    assert syncer.flush(30)
    assert [(d.epoch, d.update) for d in list_durable(home)] == [(2, 60)]


def test_a_restored_checkpoint_is_not_copied_back(maker: CheckpointMaker, dirs: tuple[Path, Path],
                                                  tmp_path: Path) -> None:  # fmt: skip
    """After a takeover restores update 50, home already holds it: flush is instant and copies nothing."""
    local, home = dirs
    maker.make(local / "model_last.pt", 50)
    assert CheckpointSync(local, home, epoch=1).flush(30)
    fresh = tmp_path / "vm2"
    assert restore(home, fresh) is not None
    log = Recorder()
    assert CheckpointSync(fresh, home, epoch=2, log=log).flush(30)
    assert "sync.start" not in log.names()
    assert [(d.epoch, d.update) for d in list_durable(home)] == [(1, 50)]


def test_restore_walks_back_past_a_corrupt_newest(maker: CheckpointMaker, dirs: tuple[Path, Path],
                                                  tmp_path: Path) -> None:  # fmt: skip
    """Bytes flipped on home (size unchanged) fail the digest check: restore takes the previous one."""
    local, home = dirs
    syncer = CheckpointSync(local, home, epoch=1, keep=3)
    for update in (10, 20, 30):
        maker.make(local / "model_last.pt", update, MB)
        assert syncer.flush(30)
    newest, middle = list_durable(home)[-1], list_durable(home)[-2]
    with newest.path.open("r+b") as handle:  # a bit rot / a bad upload in the middle of the tensor data
        handle.seek(newest.size // 2)
        handle.write(b"\xff" * 64)
    middle.path.write_bytes(middle.path.read_bytes()[:-100] + b"\0" * 100)  # wrecks the zip directory

    log = Recorder()
    restored = restore(home, tmp_path / "fresh", log=log)
    assert restored is not None
    assert restored.update == 10
    skipped = [(f["file"], f["reason"]) for name, f in log.events if name == "restore.skip"]
    assert [name for name, _ in skipped] == [newest.path.name, middle.path.name]
    assert "differs from its manifest" in skipped[0][1]
    assert inspect_checkpoint(tmp_path / "fresh" / "model_last.pt").update == 10
    assert restore(tmp_path / "no-home", tmp_path / "fresh2") is None


def test_a_torn_source_is_retried_never_published(maker: CheckpointMaker, dirs: tuple[Path, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """model_last.pt rewritten in place mid-copy: the copy is discarded and the new save synced instead."""
    local, home = dirs
    monkeypatch.setenv("F5GUARD_SYNC_CHUNK_DELAY_S", "0.2")
    maker.make(local / "model_last.pt", 10, 40 * MB)
    log = Recorder()
    syncer = CheckpointSync(local, home, epoch=1, log=log)
    syncer.start()
    try:
        wait_until(lambda: any(n.startswith(".ckpt-e0001-u000000010.pt.tmp-") for n in home_names(home)),
                   what="the first copy to start")  # fmt: skip
        maker.make(local / "model_last.pt", 20, 40 * MB)  # F5-TTS's next save, in place
        wait_until(lambda: (s := syncer.status().durable) and s.update == 20, timeout=60, what="update 20")
    finally:
        syncer.stop()
    assert "sync.torn" in log.names()
    assert [f["update"] for name, f in log.events if name == "sync.done"] == [20]
    assert home_names(home) == ["ckpt-e0001-u000000020.json", "ckpt-e0001-u000000020.pt"]
    assert list_durable(home)[-1].digest == file_digest(local / "model_last.pt")


def test_a_failing_lease_check_writes_nothing(maker: CheckpointMaker, dirs: tuple[Path, Path]) -> None:
    """fence() raising before the first write: home is not even created; status says why."""
    local, home = dirs
    maker.make(local / "model_last.pt", 10)

    def fence() -> None:
        raise LeaseLost("home has epoch 5, this supervisor holds epoch 4")

    syncer = CheckpointSync(local, home, epoch=4, fence=fence)
    syncer.start()
    try:
        assert not syncer.flush(10)
        status = syncer.status()
    finally:
        syncer.stop()
    assert not home.exists()
    assert status.fenced
    assert "epoch 5" in (status.last_error or "")


def test_a_lease_lost_mid_copy_aborts_it(maker: CheckpointMaker, dirs: tuple[Path, Path],
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The lease is re-checked during a long copy: once it fails, the temp goes and nothing is published."""
    local, home = dirs
    monkeypatch.setenv("F5GUARD_SYNC_CHUNK_DELAY_S", "0.05")
    monkeypatch.setattr(publish, "FENCE_EVERY_S", 0.0)
    maker.make(local / "model_last.pt", 10, 40 * MB)
    calls = 0

    def fence() -> None:
        nonlocal calls
        calls += 1
        if calls > 3:
            raise LeaseLost("another supervisor took over")

    syncer = CheckpointSync(local, home, epoch=1, fence=fence)
    syncer.start()
    try:
        wait_until(lambda: syncer.status().fenced, what="the sync to stop on the lease")
    finally:
        syncer.stop()
    assert home_names(home) == []
    assert calls == 4  # and no write was tried after the failing check


def test_stop_abandons_a_copy_in_flight(maker: CheckpointMaker, dirs: tuple[Path, Path],
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """stop() returns promptly during a slow copy and leaves no temp on home."""
    local, home = dirs
    monkeypatch.setenv("F5GUARD_SYNC_CHUNK_DELAY_S", "0.5")
    maker.make(local / "model_last.pt", 10, 40 * MB)
    syncer = CheckpointSync(local, home, epoch=1)
    syncer.start()
    wait_until(lambda: syncer.status().syncing, what="the copy to start")
    syncer.stop()
    assert home_names(home) == []


def test_the_worker_runs_at_the_lowest_best_effort_io_priority(dirs: tuple[Path, Path]) -> None:
    """Only the sync thread is lowered (the daemon's other threads keep theirs); the log says so."""
    local, home = dirs
    log = Recorder()
    syncer = CheckpointSync(local, home, epoch=1, log=log)
    syncer.start()
    try:
        note = wait_until(lambda: next((f["note"] for n, f in log.events if n == "sync.io_priority"), None))
        worker = next(t for t in threading.enumerate() if t.name == "f5guard-sync")
        if "unchanged" in note or shutil.which("ionice") is None:
            pytest.skip(f"cannot check the io priority here: {note}")
        shown, mine = (subprocess.run(["ionice", "-p", str(tid)], capture_output=True, text=True, check=True)
                       for tid in (worker.native_id, threading.get_native_id()))  # fmt: skip
    finally:
        syncer.stop()
    assert shown.stdout.strip() == "best-effort: prio 7"
    assert mine.stdout.strip() != "best-effort: prio 7"
