"""Home's folders vanish under a training (items 10 and 11 of issue 16), with the torch-free F5-TTS stand-in of
tests/drive_runtime.py:

* the run's checkpoints folder removed: the sync makes it again and keeps publishing, `stop` returns at once;
* Drive unmounted (home and its parents gone): the daemon never recreates home on the local disk (on Colab a
  local folder there blocks the remount), says "home is gone: … (Drive unmounted?)", keeps training locally,
  and syncs again once Drive is back; `stop` meanwhile does not wait for a home that is not there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.drive_runtime import TRAINER


def train_body(root: Path, work: Path) -> str:
    """A command-mode train stage running the stand-in trainer: an update every 50 ms, a save every 5."""
    trainer = root / "trainer.py"
    trainer.write_text(TRAINER)
    ckpts = work / "user-ckpts"
    argv = [sys.executable, str(trainer), str(ckpts), str(root / "events.jsonl"), "vm", "0.05", "5", "4096"]
    return f"""
[logs]
mirror_interval_s = 0.5
[[runs]]
name = "voice"
[[runs.stages]]
name = "train"
type = "train"
mode = "command"
checkpoint_dir = "{ckpts}"
hang_minutes = 0
stop_grace_s = 2
command = {json.dumps(argv)}
"""


def remove(folder: Path) -> None:
    """rm -rf, as a user does it: the sync may be writing into the folder meanwhile."""
    deadline = time.monotonic() + 10
    while folder.exists() and time.monotonic() < deadline:
        shutil.rmtree(folder, ignore_errors=True)
    assert not folder.exists()


def training(p: Project) -> dict:  # type: ignore[type-arg]
    return p.status()["runs"][0]["training"] or {}


def durable_at_least(p: Project, update: int) -> Callable[[], bool]:
    return lambda: (training(p).get("durable_update") or 0) >= update


@pytest.fixture
def drive(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None], Callable[[], None]]]:
    """A "Drive" mount: ``cloud`` bind-mounted at ``drive``; unmount() makes the mount point empty (home and its
    parents are gone, as when Drive disconnects), mount() brings the same content back."""
    cloud, point = tmp_path / "cloud", tmp_path / "drive"
    (cloud / "MyDrive").mkdir(parents=True)
    point.mkdir()

    def mount() -> None:
        proc = subprocess.run(["mount", "--bind", str(cloud), str(point)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot bind-mount a stand-in for Drive (needs root): {proc.stderr.strip()}")

    def unmount() -> None:
        subprocess.run(["umount", "-l", str(point)], check=True)

    mount()
    yield point / "MyDrive", unmount, mount
    subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def test_a_removed_checkpoints_folder_is_made_again(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project("", name="p")
    p.config.write_text(p.config.read_text() + train_body(tmp_path, p.work))
    p.cli("start", check=True)
    p.wait_for(durable_at_least(p, 5), timeout=60, what="a durable checkpoint")
    folder = p.home / "runs" / "voice" / "checkpoints"
    assert any(folder.glob("ckpt-*.pt")), sorted(folder.parent.iterdir())
    before = training(p)["durable_update"]
    remove(folder)
    p.wait_for(durable_at_least(p, before + 10), timeout=60, what="syncing again into a folder made again")
    assert any(folder.glob("ckpt-*.pt"))
    remove(folder)  # and once more, right before stopping: the last checkpoint still reaches home
    started = time.monotonic()
    stop = p.cli("stop", "--timeout", "60")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert time.monotonic() - started < 45, "stop waited for a folder nobody would make again"
    assert any(folder.glob("ckpt-*.pt")), "the final checkpoint did not reach home"


def test_drive_unmounted_home_is_not_recreated_and_syncing_resumes(make_project, tmp_path: Path, drive) -> None:  # type: ignore[no-untyped-def]
    mydrive, unmount, mount = drive
    home = mydrive / "F5TTS"
    p: Project = make_project("", name="p", home=home)
    p.config.write_text(p.config.read_text() + train_body(tmp_path, p.work))
    p.cli("start", check=True)
    p.wait_for(durable_at_least(p, 5), timeout=60, what="a durable checkpoint")
    durable_before = training(p)["durable_update"]
    unmount()
    assert not home.exists()

    def gone_said() -> bool:
        return "home is gone" in str(p.status()["daemon"]["home_problem"])

    p.wait_for(gone_said, timeout=30, what="the daemon saying home is gone")
    text = p.cli("status").stdout
    assert "Drive unmounted?" in text, text
    update = training(p).get("update") or 0
    time.sleep(3)  # several lease checks, mirror passes and saves: none may make home again
    assert not home.exists() and not mydrive.exists(), "home was recreated on the local disk"
    assert (training(p).get("update") or 0) > update, "training stopped while home was gone"
    assert training(p)["durable_update"] is None, "status called a checkpoint safe on a home it cannot see"
    mount()
    p.wait_for(lambda: p.status()["daemon"]["home_problem"] is None, timeout=60, what="home back")
    p.wait_for(durable_at_least(p, durable_before + 10), timeout=120, what="syncing again once Drive is back")
    p.cli("stop", "--timeout", "60", check=True)


def test_stop_while_drive_is_unmounted_returns(make_project, tmp_path: Path, drive) -> None:  # type: ignore[no-untyped-def]
    mydrive, unmount, _mount = drive
    p: Project = make_project("", name="p", home=mydrive / "F5TTS")
    p.config.write_text(p.config.read_text() + train_body(tmp_path, p.work))
    p.cli("start", check=True)
    p.wait_for(durable_at_least(p, 5), timeout=60, what="a durable checkpoint")
    unmount()
    started = time.monotonic()
    stop = p.cli("stop", "--timeout", "60")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert time.monotonic() - started < 45
    assert not (mydrive / "F5TTS").exists(), "stopping recreated home on the local disk"
    note = json.loads((p.work / "daemon.exit.json").read_text())
    assert note["reason"].startswith("stopped") and not note["crashed"], note
    status = p.cli("status", "--json")  # the config names a home whose parent is gone: one line, and JSON
    assert status.returncode == 2 and "is Drive mounted?" in status.stderr, status.stderr
    assert "is Drive mounted?" in json.loads(status.stdout)["error"]
