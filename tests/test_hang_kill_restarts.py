"""A trainer killed for a hang is restarted, never taken for finished, even when its graceful-stop handler exits 0
(F5-TTS under f5guard does: SIGTERM saves and exits 0). Torch-free: the F5-TTS stand-in of the drive test bed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import Project
from tests.drive_runtime import TRAINER

# The stand-in's checkpoint writer, then: save update 2, print its bar and "Saved", hang; SIGTERM exits 0.
HANGER = (
    TRAINER[: TRAINER.index("last = os.path.join")]
    + """
import signal
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
last = os.path.join(ckpts, "model_last.pt")
save(last, 2)
print("Epoch 1/1:  0%|  | 2/100 [00:01<00:10, 2.00update/s, loss=0.5, update=2]", flush=True)
print("Saved last checkpoint at update 2", flush=True)
while True:
    time.sleep(60)
"""
)


def test_a_hang_killed_trainer_that_exits_0_is_restarted_without_a_final_export(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Defect: `finished = exit.ok and not stopping` ignored why the trainer was stopped: the final inference
    copy (and sample) of a "finished" training ran, blocking the daemon up to 1200 s, before the restart."""
    script = tmp_path / "hanger.py"
    script.write_text(HANGER)
    tools = tmp_path / "bin"  # a py-spy stand-in: the stacks of each process, read from outside
    tools.mkdir()
    (tools / "py-spy").write_text("#!/bin/sh\necho 'Thread 1 (idle): MainThread'\n")
    (tools / "py-spy").chmod(0o755)
    body = f"""
[[runs]]
name = "voice"
[[runs.stages]]
name = "train"
type = "train"
mode = "command"
checkpoint_dir = "{{work}}/ckpts"
command = ["{sys.executable}", "{script}", "{{work}}/ckpts", "{tmp_path}/events.jsonl", "vm", "1", "1", "1024"]
hang_minutes = 0.05
export_every = 1000
[runs.stages.restart]
backoff_initial_s = 0.2
"""
    p: Project = make_project(body)
    p.env["PATH"] = f"{tools}:{p.env.get('PATH', '')}"
    p.cli("start", check=True)
    stage = p.wait_for(
        lambda: (s := p.status()["runs"][0]["stages"][0])["restarts"] >= 1 and s["state"] == "running" and s,
        timeout=60,
        what="a restart after the hang kill",
    )
    assert isinstance(stage, dict) and "no training progress" in stage["last_failure"], stage
    log = [json.loads(line) for line in (p.work / "logs" / "daemon.jsonl").read_text().splitlines()]
    assert [e for e in log if e.get("event") == "killing attempt"]
    stage_log = (p.work / "logs" / "voice" / "train.log").read_text()
    assert "===== stacks of" in stage_log and "Thread 1 (idle): MainThread" in stage_log, stage_log
    assert not [e for e in log if str(e.get("event", "")).startswith("export.")], "no final export: not finished"
    assert p.status()["runs"][0]["training"]["durable_update"] == 2
