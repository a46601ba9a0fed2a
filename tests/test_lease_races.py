"""Two starts on one work dir give one daemon; two work dirs on one home: the second is refused, --takeover wins
and the old daemon exits on seeing the higher epoch."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil

from tests.conftest import Project, is_dead, pids_of_stage, wait_dead

FOREVER = """
[[runs]]
name = "r"
[[runs.stages]]
name = "serve"
long_running = true
stop_grace_s = 5
command = ["sleep", "600"]
"""


def test_two_starts_racing_make_one_daemon(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(FOREVER)
    cmd = [sys.executable, "-m", "f5guard", "start", "--config", str(p.config)]
    racers = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=p.env) for _ in range(3)
    ]
    outputs = [r.communicate(timeout=60) for r in racers]
    assert all(r.returncode == 0 for r in racers), outputs
    texts = [out for out, _err in outputs]
    assert sum("f5guard started" in t for t in texts) == 1, texts
    assert sum("already running" in t for t in texts) == 2, texts
    p.wait_for(lambda: p.stage_state("r", "serve") == "running", what="serve running")
    winner = p.daemon_pid()
    # A loser said "already-running" before its `start` returned, but may still be exiting (interpreter shutdown
    # on a loaded machine): wait, bounded, until the lock holder is the only daemon left instead of counting once.
    deadline = time.monotonic() + 30
    while (pids := _daemon_pids(p)) != [winner] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids == [winner], f"daemons of this config: {pids}; the lock holder: {winner}"
    assert len([proc for proc in pids_of_stage(p) if not is_dead(proc)]) == 1


def _daemon_pids(p: Project) -> list[int]:
    """Live `python -m f5guard.daemon` processes for this config (zombies and vanished ones do not count)."""
    return sorted(
        proc.pid
        for proc in psutil.process_iter(["cmdline"])
        if "f5guard.daemon" in " ".join(proc.info["cmdline"] or [])
        and str(p.config) in " ".join(proc.info["cmdline"] or [])
        and not is_dead(proc)
    )


def test_second_runtime_refused_then_takeover(make_project) -> None:  # type: ignore[no-untyped-def]
    old: Project = make_project(FOREVER, name="old")
    new: Project = make_project(FOREVER, name="new", home=old.home)
    old.cli("start", check=True)
    old.wait_for(lambda: old.stage_state("r", "serve") == "running", what="old serving")
    old_pid = old.daemon_pid()
    assert old_pid
    old_children = pids_of_stage(old)

    refused = new.cli("start")
    assert refused.returncode == 3, refused.stderr
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1
    assert f"pid {old_pid}" in line and "host " in line and "last heartbeat" in line and "--takeover" in line
    assert not new.status()["daemon"]["running"]

    t0 = time.monotonic()
    took = new.cli("start", "--takeover", check=True)
    assert "epoch 2" in took.stdout
    assert not wait_dead([psutil.Process(old_pid)], timeout=15), "the old daemon must exit on the higher epoch"
    assert not wait_dead(old_children, timeout=5), "and stop its children first"
    took_s = time.monotonic() - t0
    new.wait_for(lambda: new.stage_state("r", "serve") == "running", what="new serving")

    claims = [json.loads(c.read_text()) for c in (old.home / ".f5guard" / "claims").glob("*.json")]
    by_pid = {c["runtime"]["pid"]: c for c in claims}
    assert by_pid[new.daemon_pid()]["epoch"] == 2 and not by_pid[new.daemon_pid()]["released"]
    assert by_pid[old_pid]["epoch"] == 1 and by_pid[old_pid]["released"], "the old owner said it left"
    log = (old.work / "logs" / "daemon.jsonl").read_text()
    assert "lease lost" in log and "epoch 2 > ours 1" in log
    # Each runtime writes home state copies of its own, named by epoch and runtime: the newest is the new one's.
    copies = sorted(p.name for p in (old.home / ".f5guard").glob("state-e*.json"))
    assert copies[-1].startswith("state-e0002-")
    assert json.loads((old.home / ".f5guard" / copies[-1]).read_text())["daemon"]["pid"] == new.daemon_pid()
    assert took_s < 15


def test_takeover_from_a_frozen_holder(make_project) -> None:  # type: ignore[no-untyped-def]
    """A holder that cannot react (SIGSTOP) loses its marker after the lease wait; on waking it sees the
    higher epoch and exits without touching the new owner's files."""
    old: Project = make_project(FOREVER, name="old")
    new: Project = make_project(FOREVER, name="new", home=old.home)
    old.cli("start", check=True)
    old_pid = old.daemon_pid()
    assert old_pid
    old.wait_for(lambda: old.stage_state("r", "serve") == "running", what="old serving")
    frozen = psutil.Process(old_pid)
    frozen.suspend()
    try:
        new.cli("start", "--takeover", check=True)
        new.wait_for(lambda: new.stage_state("r", "serve") == "running", what="new serving")
    finally:
        frozen.resume()
    assert not wait_dead([frozen], timeout=15)
    assert new.status()["daemon"]["running"]
    owner = new.status()["lease"]
    assert owner["pid"] == new.daemon_pid() and owner["epoch"] == 2
