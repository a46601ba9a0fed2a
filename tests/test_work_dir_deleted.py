"""Scenario 18: the work dir deleted under a running daemon, and the project started again in the same place.
One daemon ends up running, it can be seen and stopped, and nothing of the old one touches the new one's files:
the old daemon notices that the lock file it holds is no longer the work dir's, stops its stages and exits
without writing a pidfile, state or exit note there (pid + start time + lock inode: f5guard/pidfile.py)."""

from __future__ import annotations

import json
import shutil
import signal

import psutil

from tests.conftest import Project, pids_of_stage, wait_dead
from tests.test_control_without_config import SERVE, start_serving


def test_deleting_the_work_dir_stops_the_daemon_and_its_stages(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(SERVE)
    daemon = start_serving(p)
    stage = pids_of_stage(p)
    assert stage
    shutil.rmtree(p.work)
    assert not wait_dead([daemon], timeout=15), "the daemon kept running, invisible, after its work dir was deleted"
    assert not wait_dead(stage, timeout=5), "its stage kept running"
    assert not p.work.exists(), "the old daemon recreated the work dir it lost"
    started = p.cli("start")
    assert started.returncode == 0 and "f5guard started" in started.stdout, started.stdout + started.stderr
    p.wait_for(lambda: p.stage_state("r", "serve") == "running", what="the new daemon serving")
    p.cli("stop", "--timeout", "30", check=True)


def test_an_old_daemon_never_removes_its_successors_pidfile(make_project) -> None:  # type: ignore[no-untyped-def]
    """The old daemon is frozen while the work dir is deleted and a new one takes over in the same place; when
    it wakes it exits, and the new daemon stays visible and stoppable (status, stop, start all see it)."""
    p: Project = make_project(SERVE)
    old = start_serving(p)
    old.send_signal(signal.SIGSTOP)
    try:
        shutil.rmtree(p.work)
        takeover = p.cli("start", "--takeover")
        assert takeover.returncode == 0, takeover.stdout + takeover.stderr
        p.wait_for(lambda: p.stage_state("r", "serve") == "running", timeout=30, what="the new daemon serving")
    finally:
        old.send_signal(signal.SIGCONT)
    assert not wait_dead([old], timeout=15), "the old daemon did not exit when it woke"
    new_pid = p.daemon_pid()
    assert new_pid and new_pid != old.pid, "the successor's pidfile was removed or replaced"
    report = p.status()
    assert report["daemon"]["running"] and report["daemon"]["pid"] == new_pid
    assert (
        not (p.work / "daemon.exit.json").exists()
        or json.loads((p.work / "daemon.exit.json").read_text())["pid"] != old.pid
    ), "the old daemon wrote its exit note into its successor's work dir"
    assert "already running here (pid " + str(new_pid) in p.cli("start").stdout
    stop = p.cli("stop", "--timeout", "30")
    assert stop.returncode == 0 and "stopped in" in stop.stdout, stop.stdout + stop.stderr
    assert not wait_dead([psutil.Process(new_pid)] if psutil.pid_exists(new_pid) else [], timeout=5)
