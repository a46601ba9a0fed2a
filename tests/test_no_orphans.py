"""Invariant 5: stopping ends every process the daemon started, down to a grandchild that double-forked, called
setsid and ignores SIGTERM (it left its stage's process group: killpg and a tree walk miss it). The daemon is a
child subreaper (f5guard/stages/lineage.py), so such an orphan is re-parented to it, not to PID 1; and every process
carries the daemon's marker, so a daemon killed with SIGKILL leaves nothing the next start does not end."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil

from tests.conftest import Project, is_dead, wait_dead

# A stage whose child daemonizes: ( ... & ) forks and the subshell exits at once; setsid leaves the group;
# trap "" TERM survives the exec, so SIGTERM does nothing to it.
DAEMONIZE = """#!/bin/sh
( setsid sh -c 'trap "" TERM; echo $$ > "$0/grandchild.pid"; exec sleep 600' "$F5GUARD_WORK" & )
exec sleep 600
"""


def _project(make_project, tmp_path: Path) -> Project:  # type: ignore[no-untyped-def]
    script = tmp_path / "daemonize.sh"
    script.write_text(DAEMONIZE)
    return make_project(f"""
[[runs]]
name = "r"
[[runs.stages]]
name = "serve"
long_running = true
stop_grace_s = 2
command = ["sh", "{script}"]
""")  # fmt: skip


def _grandchild(p: Project) -> psutil.Process:
    pid_file = p.work / "grandchild.pid"
    p.wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the grandchild's pid")
    proc = psutil.Process(int(pid_file.read_text()))
    assert os.getsid(proc.pid) == proc.pid, "it leads a session of its own: it left the stage's group"
    return proc


def test_stop_ends_a_grandchild_that_left_the_process_group(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = _project(make_project, tmp_path)
    p.cli("start", check=True)
    grandchild = _grandchild(p)
    daemon = p.daemon_pid()
    p.wait_for(lambda: grandchild.ppid() == daemon, timeout=5, what="the orphan re-parented to the daemon")
    stop = p.cli("stop", "--timeout", "30")
    assert stop.returncode == 0, stop.stderr
    assert not wait_dead([grandchild], timeout=5), "the daemonized grandchild survived `f5guard stop`"


def test_next_start_ends_what_a_killed_daemon_left(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL gives the daemon no chance: its stage dies with it (PR_SET_PDEATHSIG), the daemonized grandchild
    does not; the next daemon of the work dir finds it by the marker in its environment and ends it."""
    p = _project(make_project, tmp_path)
    p.cli("start", check=True)
    grandchild = _grandchild(p)
    daemon = psutil.Process(p.daemon_pid())
    daemon.send_signal(signal.SIGKILL)
    assert not wait_dead([daemon], timeout=10)
    assert not is_dead(grandchild), "the grandchild outlives a SIGKILLed daemon (nothing can prevent that)"
    (p.work / "grandchild.pid").unlink()
    p.cli("start", check=True)
    assert not wait_dead([grandchild], timeout=10), "the next start left the dead daemon's grandchild running"
    assert "killing processes a dead daemon left" in (p.work / "logs" / "daemon.jsonl").read_text()
    p.cli("stop", "--timeout", "30", check=True)


def test_a_restarted_attempt_ends_the_orphans_of_the_last(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A stage that crashes and is restarted must not leave its daemonized child running beside the next."""
    script = tmp_path / "crash.sh"
    script.write_text(DAEMONIZE.replace("exec sleep 600\n", "sleep 1; exit 3\n"))
    p: Project = make_project(f"""
[[runs]]
name = "r"
[[runs.stages]]
name = "serve"
long_running = true
stop_grace_s = 2
command = ["sh", "{script}"]
[runs.stages.restart]
backoff_initial_s = 30
""")  # fmt: skip
    p.cli("start", check=True)
    grandchild = _grandchild(p)
    assert not wait_dead([grandchild], timeout=10), "the crashed attempt's daemonized child outlived it"
    p.cli("stop", "--timeout", "30", check=True)
