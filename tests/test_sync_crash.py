"""kill -9 in the middle of a sync: never a partial file under a final name on home; a fresh sync recovers."""
# ruff: noqa: F811  (pytest fixtures imported from tests.sync_support come back as parameters)

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from f5guard.checkpoints.copying import CHUNK, file_digest
from f5guard.checkpoints.durable import list_durable
from f5guard.checkpoints.sync import CheckpointSync
from tests.sync_support import CheckpointMaker, Recorder, home_names, maker, wait_until  # noqa: F401 - fixtures

pytestmark = pytest.mark.train
MB = 1024 * 1024
_SYNC_ONCE = (
    "import sys; from pathlib import Path; from f5guard.checkpoints.sync import CheckpointSync; "
    "CheckpointSync(Path(sys.argv[1]), Path(sys.argv[2]), epoch=1).flush(600)"
)


@pytest.mark.parametrize("chunks_before_kill", [1, 12])
def test_kill_9_mid_sync_leaves_the_old_checkpoint_and_only_a_temp(
        maker: CheckpointMaker, tmp_path: Path, chunks_before_kill: int) -> None:  # fmt: skip
    """A real process copying a 200 MB checkpoint is SIGKILLed; the next CheckpointSync removes its temp."""
    local, home = tmp_path / "ckpts", tmp_path / "home"
    local.mkdir()
    maker.make(local / "model_last.pt", 5)
    assert CheckpointSync(local, home, epoch=1).flush(30)
    old = list_durable(home)[-1]
    source = maker.make(local / "model_last.pt", 10, 200 * MB)

    env = {**os.environ, "F5GUARD_SYNC_CHUNK_DELAY_S": "0.05"}
    proc = subprocess.Popen([sys.executable, "-c", _SYNC_ONCE, str(local), str(home)], env=env)
    temp = home / f".ckpt-e0001-u000000010.pt.tmp-{proc.pid}"
    try:
        wait_until(lambda: temp.exists() and temp.stat().st_size >= chunks_before_kill * CHUNK, timeout=60,
                   what="the copy to get under way")  # fmt: skip
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert home_names(home) == sorted([old.path.name, old.manifest.name, temp.name])
    assert 0 < temp.stat().st_size < source.stat().st_size
    assert list_durable(home) == [old]
    assert file_digest(old.path) == old.digest

    log = Recorder()
    syncer = CheckpointSync(local, home, epoch=1, log=log)
    syncer.start()
    try:
        assert syncer.flush(120)
    finally:
        syncer.stop()
    assert ("sync.removed_temp", {"file": temp.name}) in log.events
    assert home_names(home) == ["ckpt-e0001-u000000010.json", "ckpt-e0001-u000000010.pt"]
    sha = file_digest(source)
    assert list_durable(home)[-1].digest == sha == file_digest(home / "ckpt-e0001-u000000010.pt")
