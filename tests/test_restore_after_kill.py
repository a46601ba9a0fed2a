"""kill -9 the daemon: status says it is dead, no stage survives it, and the next start skips done stages."""

from __future__ import annotations

import json

import psutil

from tests.conftest import Project, kill9, pids_of_stage, wait_dead

PIPELINE = """
[[runs]]
name = "r"
[[runs.stages]]
name = "one"
command = ["sh", "-c", "echo run >> {work}/one.count; printf 1 > {work}/one.txt"]
outputs = ["{work}/one.txt"]
[[runs.stages]]
name = "two"
inputs = ["{work}/one.txt"]
command = ["sh", "-c", "echo run >> {work}/two.count; printf 2 > {work}/two.txt"]
outputs = ["{work}/two.txt"]
[[runs.stages]]
name = "slow"
inputs = ["{work}/two.txt"]
command = ["sh", "-c", "echo run >> {work}/slow.count; if [ -e {work}/go ]; then printf 3 > {work}/slow.txt; else sleep 300; fi"]
outputs = ["{work}/slow.txt"]
"""


def count(p: Project, name: str) -> int:
    path = p.work / f"{name}.count"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_kill9_daemon_then_recover(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(PIPELINE)
    p.cli("start", check=True)
    p.wait_for(lambda: p.stage_state("r", "slow") == "running", what="slow stage running")
    stage_procs = pids_of_stage(p)
    leader = psutil.Process(p.state()["runs"]["r"]["stages"]["slow"]["pid"])
    assert leader in stage_procs and len(stage_procs) == 2  # sh and its sleep
    daemon_pid = p.daemon_pid()
    assert daemon_pid
    kill9(daemon_pid)
    assert not wait_dead([psutil.Process(daemon_pid)])

    # The stage's leader gets SIGTERM when its supervisor dies (PR_SET_PDEATHSIG): a trainer checkpoints and
    # exits. Members of its group that ignore their parent's death are killed by the next daemon at start.
    assert not wait_dead([leader], timeout=10), "the stage leader outlived its killed daemon"
    dead = p.cli("status")
    assert dead.returncode == 1 and "no f5guard supervisor runs here" in dead.stdout
    report = json.loads(p.cli("status", "--json").stdout)
    assert report["daemon"]["running"] is False
    assert report["lease"] is None  # its claim died with its pid (same machine): nobody holds home
    slow = report["runs"][0]["stages"][2]
    assert (slow["name"], slow["state"]) == ("slow", "interrupted"), "no supervisor: it is not running"
    assert report["runs"][0]["state"] == "interrupted"

    (p.work / "go").write_text("")
    p.cli("start", check=True)  # same host, dead holder: the lease is taken at once
    assert not wait_dead(stage_procs, timeout=10), "the next daemon must kill the leftover group"
    p.wait_run("r")
    assert (count(p, "one"), count(p, "two"), count(p, "slow")) == (1, 1, 2)
    report = p.status()
    states = [s["state"] for s in report["runs"][0]["stages"]]
    assert states == ["skipped", "skipped", "done"]
    assert report["daemon"]["epoch"] == 2


def test_leftover_group_is_killed_on_start(make_project) -> None:  # type: ignore[no-untyped-def]
    """A stage child that escaped its dying daemon (its own PDEATHSIG ignored) is killed by the next daemon."""
    body = """
[[runs]]
name = "r"
[[runs.stages]]
name = "stubborn"
stop_grace_s = 1
command = ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]
"""
    p: Project = make_project(body)
    p.cli("start", check=True)
    p.wait_for(lambda: p.stage_state("r", "stubborn") == "running", what="stage running")
    procs = pids_of_stage(p)
    kill9(p.daemon_pid() or 0)
    assert wait_dead(procs, timeout=1.5), "the stage ignores SIGTERM, so it outlives the daemon for now"
    p.cli("start", check=True)
    survivors = [proc for proc in procs if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE]
    assert not wait_dead(survivors, timeout=10)
    assert p.stage_state("r", "stubborn") == "running"  # and it was started again, supervised
