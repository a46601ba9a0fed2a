"""A spot VM preempted under a SkyPilot managed job (SCENARIOS 19): the whole VM dies, the next one resumes from the
newest checkpoint that reached the bucket, and the job ends by itself.

The bucket is tests/drivesim.py's cloud (a write-back mount per VM, as SkyPilot's MOUNT_CACHED is: uploads take
time by size, files overtake each other, a dead VM loses what it had not uploaded), served over HTTP by
tests/bucketsim.py so the daemon's real google-cloud-storage client confirms each checkpoint by size and crc32c
([store] kind = "bucket"). Each VM is a pid namespace of its own (tests/drive_runtime.py) running what the task's
``run`` runs: ``f5guard run --foreground --until-done --takeover``, with the torch-free trainer stand-in.

VM A trains with uploads slower than saves; it is killed (SIGKILL to its pid 1: the daemon, the trainer, all of
it) once the bucket holds a checkpoint and the next one is still uploading, and its unsent uploads are lost. VM B
(a new view of the bucket, an empty work dir) resumes from exactly the newest checkpoint the bucket held when A
died, trains to the end, waits for its final checkpoint's upload to be confirmed by the bucket, and exits 0.
Then `f5guard status` from a machine that only mounts the bucket tells the same. About 25 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from f5guard.daemon import exitcodes
from tests.bucketsim import Bucket, BucketSim
from tests.drive_runtime import CloudWatch, Lease, Runtime, Training, namespaces_work
from tests.drivesim import Delays, DriveSim

pytest.importorskip("google.cloud.storage")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LEASE = Lease(duration_s=2, heartbeat_s=0.5, takeover_slack_s=1, epoch_poll_s=0.2, settle_s=0.5,
              arrival_timeout_s=20, retention_delay_s=1)  # fmt: skip
# 256 kB checkpoints every 0.5 s; an upload takes ~2.5 s (128 kB/s): several saves per upload, as 5.4 GB at
# tens of MB/s against saves every few minutes on a cloud VM.
TRAINING = Training(step_s=0.05, save_every=10, ckpt_bytes=256 * 1024, total=240)
HOP = Delays(0.3, 0.8, bytes_per_s=128 * 1024)
DOWN = Delays(0.1, 0.3, bytes_per_s=4 * 1024 * 1024)


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _vm(name: str, sim: DriveSim, tmp_path: Path, bucket: BucketSim, namespaced: bool) -> Runtime:
    mount = sim.view(name)  # on a real VM the same path each time: the task's file_mounts
    rt = Runtime(name, tmp_path / f"vm-{name}", mount / "home", tmp_path / f"trainer-{name}.jsonl", namespaced)
    rt.env.update(bucket.env())
    rt.write_config(LEASE, TRAINING, {"kind": "bucket", "bucket": "gs://voices", "mount": str(mount), "poll_s": 0.3})
    rt.boot()
    return rt


def _job(rt: Runtime) -> Any:
    argv = [sys.executable, "-m", "f5guard", "run", "--foreground", "--until-done", "--takeover", "--config",
            str(rt.config)]  # fmt: skip
    return rt.spawn(argv, rt.root / "job.log")


def _manifest_states(root: Path) -> dict[int, str]:
    found = {}
    for path in (root / "home" / "runs" / "voice" / "checkpoints").glob("ckpt-*.json"):
        doc = json.loads(path.read_text())
        found[int(doc["update"])] = (doc.get("cloud") or {}).get("state", "")
    return found


def _status_from_elsewhere(tmp_path: Path, vm: Runtime, bucket: BucketSim) -> dict[str, Any]:
    """`f5guard status --json` from a machine that only mounts the bucket (no work dir, no daemon): the same
    config, its work dir absent there, the bucket named by the environment as the task names it."""
    text = vm.config.read_text().replace(f'work = "{vm.work}"', f'work = "{tmp_path / "laptop-work"}"')
    text = "\n".join(line for line in text.splitlines() if not line.startswith(("kind =", "bucket =", "mount =")))
    config = tmp_path / "laptop.toml"
    config.write_text(text)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("F5GUARD_")}, **bucket.env(),
           "F5GUARD_STORE_BUCKET": "gs://voices", "F5GUARD_STORE_MOUNT": str(vm.home.parent)}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "f5guard", "status", "--json", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, env=env, check=False)  # fmt: skip
    runs = json.loads(proc.stdout)["runs"] if proc.stdout.strip() else []
    assert runs, proc.stderr
    return dict(runs[0])


def test_a_preempted_vm_resumes_on_the_next_from_the_newest_checkpoint_in_the_bucket(tmp_path: Path) -> None:
    sim = DriveSim(tmp_path / "drive", ["A"], upload=HOP, download=DOWN, poll_s=0.1, seed=19)
    namespaced = namespaces_work()
    with BucketSim({"voices": Bucket(sim.cloud)}) as bucket, sim, CloudWatch(sim, every_s=0.1) as watch:
        a = _vm("A", sim, tmp_path, bucket, namespaced)
        b: Runtime | None = None
        try:
            job_a = _job(a)
            # the bucket holds a checkpoint, A has a newer one still uploading: preempt now
            _wait("a checkpoint in the bucket and the next one uploading",
                  lambda: watch.sample().highest and sim.uploading("A", "*ckpt-*.pt"), 60)  # fmt: skip
            lost = sim.kill_view("A")
            a.kill()
            killed_at = time.time()
            job_a.wait(timeout=30)
            in_bucket = watch.newest_before(killed_at)
            confirmed_on_a = [u for u, state in _manifest_states(sim.view("A")).items() if state == "confirmed"]
            assert lost and sim.events("lost", "A", "*ckpt-*.pt"), "no checkpoint upload was lost with the VM"
            assert in_bucket is not None and not a.processes()

            sim.add_view("B")  # a new VM: the same bucket, an empty work dir
            b = _vm("B", sim, tmp_path, bucket, namespaced)
            started = time.monotonic()
            job_b = _job(b)
            first = _wait("B's trainer", b.starts, 60)[0]
            resumed_after_s = time.monotonic() - started
            code = job_b.wait(timeout=90)
            log = (b.root / "job.log").read_text(errors="replace")
            assert code == exitcodes.DONE, log[-3000:]
            assert first["u"] == in_bucket, f"B resumed from u{first['u']}, the bucket held u{in_bucket} at the kill"
            assert max(e["u"] for e in b.trainer_events() if e["ev"] == "tick") == TRAINING.total
            states = _manifest_states(sim.view("B"))
            assert states.get(TRAINING.total) == "confirmed", states  # the bucket's answer, recorded before exit 0
            assert watch.highest_ever() == TRAINING.total and not watch.decreases(), watch.decreases()
            assert not watch.mismatched()
            in_cloud = json.loads((b.work / "daemon.exit.json").read_text())
            assert "every run finished" in in_cloud["reason"], in_cloud
            seen = _status_from_elsewhere(tmp_path, b, bucket)
            assert (seen["state"], seen["training"]["durable_update"]) == ("done", TRAINING.total), seen
            cloud = seen["training"]["cloud"]
            assert (cloud["kind"], cloud["confirmed_update"], cloud["confirmed_estimated"]) == (
                "bucket", TRAINING.total, False), cloud  # fmt: skip
            print("preemption-figures:", json.dumps({
                "newest_in_bucket_at_kill": in_bucket, "confirmed_by_a_before_kill": sorted(confirmed_on_a),
                "lost_uploads": [e.path for e in sim.events("lost", "A")], "b_resumed_from": first["u"],
                "b_trainer_after_s": round(resumed_after_s, 1), "b_exit": code}))  # fmt: skip
        finally:
            for rt in (a, b):
                if rt is not None:
                    rt.kill()
