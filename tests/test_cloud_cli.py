"""The user's side of "in the cloud": `f5guard doctor`, `status --json`'s cloud, `stop --wait-upload`, and `start`
refusing a home that cannot hold the next checkpoint plus the one kept. No daemon needed: the CLI reads home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from f5guard.checkpoints.durable import list_durable
from f5guard.checkpoints.sync import CheckpointSync
from f5guard.cloud.detect import open_store
from f5guard.cloud.survey import home_findings, upload_probe
from tests.conftest import Project
from tests.drive_runtime import write_checkpoint
from tests.drivesim import ITEM_ID, Delays, DriveSim, stable_id, xattrs_work
from tests.sync_support import tmpfs  # noqa: F401 - fixture

needs_xattrs = pytest.mark.skipif(not xattrs_work(Path(os.environ.get("TMPDIR", "/tmp"))),
                                  reason="this file system keeps no user.* extended attributes")  # fmt: skip
TRAIN = """
[[runs]]
name = "voice"
[[runs.stages]]
name = "train"
type = "train"
mode = "command"
checkpoint_dir = "{ckpts}"
command = ["{python}", "-c", "import time; time.sleep(60)"]
"""


def _doctor(cwd: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    env = {k: v for k, v in os.environ.items() if not k.startswith("F5GUARD_")}
    proc = subprocess.run([sys.executable, "-m", "f5guard", "doctor", "--json", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300, check=False)  # fmt: skip
    return proc.returncode, json.loads(proc.stdout or "{}") if proc.returncode in (0, 1) else {"err": proc.stderr}


def _finding(report: dict, topic: str) -> dict:  # type: ignore[type-arg]
    return next(f for f in report["findings"] if f["topic"] == topic)


@needs_xattrs
def test_doctor_on_a_plain_disk_and_on_a_folder_whose_files_carry_drivefs_attributes(tmp_path: Path) -> None:
    """Kind local on this machine's disk (what doctor reads there, in-process: the stack probe below costs a torch
    import); kind drive on a (simulated) DriveFS folder, whose 64 MiB probe is timed until DriveFS says it is
    uploaded, then removed; the stack python reports torch and the precision "auto" picks."""
    plain = tmp_path / "plain"
    plain.mkdir()
    local = open_store(plain, "auto", bytes_per_s=2e6, delay_s=600)
    found = {f.topic: f for f in home_findings(plain, local, "auto")}
    assert found["store"].value.startswith("local: auto") and found["drivefs attributes"].value == "no answer"
    assert not any(f.blocking or f.advice for f in found.values()), found
    assert "a local disk stores it at once" in upload_probe(plain, local, 2**20, 5).value
    fast = Delays(0.05, 0.1, bytes_per_s=100e6)
    with DriveSim(tmp_path / "drive", ["A"], upload=fast, poll_s=0.05, drivefs=["A"]) as sim:
        code, report = _doctor(tmp_path, "--home", str(sim.view("A")))
        assert code == 0, report
        assert _finding(report, "store")["value"].startswith("drive: auto: DriveFS"), report
        upload = _finding(report, "upload")["value"]
        assert "in the cloud after" in upload and "MB/s" in upload, report
        assert not list((sim.view("A") / ".f5guard").glob("doctor-probe-*")), "the probe is removed"
        stack = _finding(report, "precision")["value"] if _finding(report, "torch")["value"] != "not installed" else ""
        assert stack in ("", "auto picks fp32", "auto picks bf16", "auto picks fp16"), report


@needs_xattrs
def test_status_and_stop_tell_whether_the_final_checkpoint_is_in_the_cloud(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    """On a Drive home: status --json says uploading, then in the cloud; `stop --wait-upload` gives up (exit 1) while
    it uploads, and once DriveFS has it, records it in the manifest (the next runtime waits for it) and exits 0."""
    ckpts = tmp_path / "ckpts"
    project = make_project(TRAIN.format(ckpts=ckpts, python=sys.executable))
    os.setxattr(project.home, ITEM_ID, b"0Bhome")  # the mount answers: auto picks drive
    write_checkpoint(ckpts / "model_last.pt", 10)
    home_ckpts = project.home / "runs" / "voice" / "checkpoints"
    store = open_store(project.home, "auto", bytes_per_s=1, delay_s=3600)
    assert CheckpointSync(ckpts, home_ckpts, epoch=1, store=store).flush(10)
    durable = list_durable(home_ckpts)[-1]
    for path in (durable.path, durable.manifest):  # DriveFS: new in the cache, uploading
        os.setxattr(path, "user.drive.uncommitted", b"1")
        os.setxattr(path, ITEM_ID, b"local-1")

    cloud = project.status()["runs"][0]["training"]["cloud"]
    assert (cloud["kind"], cloud["uploading_update"], cloud["confirmed_update"]) == ("drive", 10, None), cloud
    assert "on Drive, uploading: u10" in project.cli("status").stdout
    late = project.cli("stop", "--wait-upload", "0.5")
    assert late.returncode == 1 and "still uploading" in late.stdout, late.stdout + late.stderr

    waiting = subprocess.Popen([sys.executable, "-m", "f5guard", "stop", "--wait-upload", "30", "--config",
                                str(project.config)], stdout=subprocess.PIPE, text=True, env=project.env)  # fmt: skip
    for path in (durable.path, durable.manifest):  # DriveFS: the upload landed
        os.setxattr(path, "user.drive.uncommitted", b"0")
        os.setxattr(path, ITEM_ID, stable_id(path.name).encode())
    deadline = time.monotonic() + 20
    while json.loads(durable.manifest.read_text())["cloud"]["state"] != "confirmed":
        assert time.monotonic() < deadline, "stop --wait-upload never recorded the upload"
        time.sleep(0.05)
    os.setxattr(durable.manifest, "user.drive.uncommitted", b"0")  # the rewritten manifest uploads too
    os.setxattr(durable.manifest, ITEM_ID, stable_id(durable.manifest.name).encode())
    out, _ = waiting.communicate(timeout=30)
    assert waiting.returncode == 0 and "the final checkpoint u10 is in the cloud: u10 (confirmed" in out, out
    cloud = project.status()["runs"][0]["training"]["cloud"]
    assert (cloud["uploading_update"], cloud["confirmed_update"]) == (None, 10), cloud


def test_start_refuses_when_home_cannot_hold_the_next_checkpoint_plus_the_one_kept(
    make_project: Callable[..., Project],
    tmp_path: Path,
    tmpfs: Callable[[str, int], Path],  # noqa: F811
) -> None:
    """6 MB checkpoints, a 16 MB home: one line with the sizes, exit 1, no daemon started."""
    ckpts = tmp_path / "ckpts"
    write_checkpoint(ckpts / "model_last.pt", 10, size=6_000_000)
    project = make_project(TRAIN.format(ckpts=ckpts, python=sys.executable), home=tmpfs("small-drive", 16))
    proc = project.cli("start")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "the next checkpoint (6.0 MB)" in line and "free" in line, line
    assert project.daemon_pid() is None
