"""A full or failing home (Drive): the last good checkpoint stays, nothing partial stays, status says why."""
# ruff: noqa: F811  (pytest fixtures imported from tests.sync_support come back as parameters)

from __future__ import annotations

import errno
import itertools
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from f5guard.checkpoints import sync
from f5guard.checkpoints.copying import file_digest
from f5guard.checkpoints.durable import RestoreFailed, list_durable, restore
from f5guard.checkpoints.sync import CheckpointSync
from tests.sync_support import CheckpointMaker, Recorder, home_names, maker, tmpfs, wait_until  # noqa: F401 - fixtures

pytestmark = pytest.mark.train
MB = 1024 * 1024
Mount = Callable[[str, int], Path]


def _fill(path: Path) -> int | None:
    """Write to ``path`` until the filesystem is full; the errno that stopped it."""
    with path.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * MB)
        except OSError as err:
            return err.errno
    return None


def _durable_pair(home: Path) -> list[str]:
    return [n for n in home_names(home) if n.startswith("ckpt-")]


def test_a_checkpoint_that_cannot_fit_is_not_started(maker: CheckpointMaker, tmpfs: Mount,
                                                     tmp_path: Path) -> None:  # fmt: skip
    """Home too small for old + new: no copy starts, the old one stays, the warning says what to do;
    once space is freed the sync catches up by itself."""
    local = tmp_path / "ckpts"
    local.mkdir()
    home = tmpfs("home", 24)
    maker.make(local / "model_last.pt", 10, 2 * MB)
    log = Recorder()
    syncer = CheckpointSync(local, home, epoch=1, retry_max_s=0.3, log=log)
    syncer.start()
    try:
        assert syncer.flush(30)
        old = list_durable(home)[-1]
        maker.make(local / "model_last.pt", 20, 16 * MB)
        assert not syncer.flush(30)  # returns at once: waiting does not make room
        status = syncer.status()
        assert status.warning is not None
        assert "the checkpoint needs" in status.warning
        assert "keeping model at update 10" in status.warning
        assert "free space on Drive" in status.warning
        assert status.durable == old
        assert log.names().count("sync.start") == 1
        assert home_names(home) == [old.manifest.name, old.path.name]  # no temp, nothing partial
        assert file_digest(old.path) == old.digest

        subprocess.run(["mount", "-o", "remount,size=64m", str(home)], check=True)  # the user frees space
        wait_until(lambda: (d := syncer.status().durable) and d.update == 20, what="the sync to catch up")
        assert syncer.status().warning is None
    finally:
        syncer.stop()
    assert _durable_pair(home) == ["ckpt-e0001-u000000020.json", "ckpt-e0001-u000000020.pt"]


def test_enospc_during_the_copy_keeps_the_old_checkpoint(maker: CheckpointMaker, tmpfs: Mount,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         ) -> None:  # fmt: skip
    """Home fills up mid-copy (another writer takes the space): ENOSPC, temp removed, clear error, retried."""
    local = tmp_path / "ckpts"
    local.mkdir()
    home = tmpfs("home", 48)
    maker.make(local / "model_last.pt", 10, 2 * MB)
    log = Recorder()
    syncer = CheckpointSync(local, home, epoch=1, retry_max_s=0.3, log=log)
    assert syncer.flush(30)
    old = list_durable(home)[-1]
    monkeypatch.setenv("F5GUARD_SYNC_CHUNK_DELAY_S", "0.3")
    syncer = CheckpointSync(local, home, epoch=1, retry_max_s=0.3, log=log)
    maker.make(local / "model_last.pt", 20, 24 * MB)
    syncer.start()
    filler = home / "someone-elses-upload.bin"
    try:
        wait_until(lambda: syncer.status().syncing, what="the copy to start")
        assert _fill(filler) == errno.ENOSPC  # another writer takes every free byte
        wait_until(lambda: "No space left on device" in (syncer.status().last_error or ""), what="ENOSPC")
        error = syncer.status().last_error
        wait_until(lambda: not [n for n in home_names(home) if n.startswith(".ckpt-")], what="the temp to go")
        assert f"could not copy model_last.pt to {home}/.ckpt-e0001-u000000020.pt.tmp-" in (error or "")
        assert _durable_pair(home) == [old.manifest.name, old.path.name]
        assert syncer.status().durable == old
        assert file_digest(old.path) == old.digest

        filler.unlink()
        wait_until(lambda: (d := syncer.status().durable) and d.update == 20, what="the retry to succeed")
        assert syncer.status().last_error is None
    finally:
        syncer.stop()
    assert _durable_pair(home) == ["ckpt-e0001-u000000020.json", "ckpt-e0001-u000000020.pt"]


def test_a_vanished_home_is_retried_with_growing_delays(maker: CheckpointMaker, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Home unreachable (here: a file where its folder should be): errors back off exponentially up to
    retry_max_s, training's local checkpoint is untouched, and the sync catches up when home is back."""
    monkeypatch.setattr(sync, "FIRST_RETRY_S", 0.05)
    local = tmp_path / "ckpts"
    local.mkdir()
    blocker = tmp_path / "drive"
    blocker.write_text("not a folder")
    home = blocker / "checkpoints"
    maker.make(local / "model_last.pt", 10)
    log = Recorder()
    syncer = CheckpointSync(local, home, epoch=1, retry_max_s=0.4, log=log)
    syncer.start()
    try:
        wait_until(lambda: log.names().count("sync.error") >= 6, what="six failed tries")
        blocker.unlink()
        wait_until(lambda: syncer.status().durable is not None, what="the sync to catch up")
    finally:
        syncer.stop()
    errors = [t for (name, _), t in zip(log.events, log.times, strict=True) if name == "sync.error"]
    gaps = [b - a for a, b in itertools.pairwise(errors)]
    assert gaps[0] < gaps[2] < 0.75
    assert all(0.3 < g < 0.75 for g in gaps[3:5])  # capped at retry_max_s, not 0.8 and 1.6
    assert "could not read" in log.events[[n for n, _ in log.events].index("sync.error")][1]["error"]


def test_restore_onto_a_full_local_disk_fails_loudly(maker: CheckpointMaker, tmpfs: Mount,
                                                     tmp_path: Path) -> None:  # fmt: skip
    """A local ENOSPC must not make restore fall back to an older checkpoint (or none): it raises, cleanly."""
    local = tmp_path / "ckpts"
    local.mkdir()
    home = tmp_path / "home"
    syncer = CheckpointSync(local, home, epoch=1, keep=2)
    for update in (10, 20):
        maker.make(local / "model_last.pt", update, 6 * MB)
        assert syncer.flush(30)
    small = tmpfs("fresh-vm", 4)
    with pytest.raises(RestoreFailed, match=r"could not restore .*ckpt-e0001-u000000020\.pt .*No space left"):
        restore(home, small)
    assert home_names(small) == []


def test_restore_from_an_unreachable_home_fails_loudly(tmp_path: Path) -> None:
    """Home that cannot be listed (Drive gone) is an error to retry, not "no checkpoint: start from zero"."""
    blocker = tmp_path / "drive"
    blocker.write_text("not a folder")
    with pytest.raises(RestoreFailed, match=r"could not list .*drive/checkpoints to restore a checkpoint"):
        restore(blocker / "checkpoints", tmp_path / "fresh")
