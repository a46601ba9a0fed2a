"""Control never depends on today's config: a config edited (broken, or naming another work dir) under a running
daemon still lets `status`, `tail` and `stop` reach it; the daemon notices the edit and says what a restart
would change; how each daemon life ended stays visible after it is gone."""

from __future__ import annotations

import json

import psutil

from tests.conftest import Project, wait_dead

SERVE = """
[[runs]]
name = "r"
[[runs.stages]]
name = "serve"
long_running = true
stop_grace_s = 5
command = ["sh", "-c", "echo serving; exec sleep 600"]
"""


def start_serving(p: Project) -> psutil.Process:
    p.cli("start", check=True)
    p.wait_for(lambda: p.stage_state("r", "serve") == "running", what="serving")
    pid = p.daemon_pid()
    assert pid
    return psutil.Process(pid)


def test_broken_config_still_controls_the_running_daemon(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(SERVE)
    daemon = start_serving(p)
    p.config.write_text(p.config.read_text() + "\nthis is = = not toml\n")

    status = p.cli("status")
    assert status.returncode == 0, status.stderr
    assert "f5guard running" in status.stdout and "serve" in status.stdout
    assert "invalid TOML" in status.stdout + status.stderr and "config it started with" in status.stdout
    as_json = p.cli("status", "--json")
    assert json.loads(as_json.stdout)["daemon"]["pid"] == daemon.pid

    p.wait_for(lambda: "the config is invalid now" in str(p.cli("status").stdout), what="the daemon's own note")
    tail = p.cli("tail", "-n", "50")
    assert tail.returncode == 0 and "serving" in tail.stdout

    stop = p.cli("stop", "--timeout", "30")
    assert stop.returncode == 0, stop.stderr
    assert "stopped in" in stop.stdout
    assert not wait_dead([daemon], timeout=10)


def test_config_naming_another_work_dir_still_stops_the_daemon(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(SERVE)
    daemon = start_serving(p)
    moved = p.root / "elsewhere"
    p.config.write_text(p.config.read_text().replace(f'work = "{p.work}"', f'work = "{moved}"'))
    status = p.cli("status")
    assert status.returncode == 0 and f"pid {daemon.pid}" in status.stdout
    assert f"now names work {moved}" in status.stdout
    stop = p.cli("stop", "--timeout", "30")
    assert stop.returncode == 0 and "stopped in" in stop.stdout, stop.stdout
    assert not wait_dead([daemon], timeout=10)
    again = p.cli("start")
    assert again.returncode == 0, "the moved work dir is a fresh start, not 'already running'"
    p.cli("stop", "--timeout", "30", check=True)


def test_an_edited_config_is_noticed_and_explained(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(SERVE)
    start_serving(p)
    p.config.write_text(p.config.read_text().replace("sleep 600", "sleep 601"))
    p.wait_for(lambda: "config changed" in p.cli("status").stdout, what="the config note")
    text = p.cli("status").stdout
    assert "stage r/serve changed" in text and "`f5guard stop` then `f5guard start` applies it" in text


def test_a_lost_lease_is_said_after_the_daemon_is_gone(make_project) -> None:  # type: ignore[no-untyped-def]
    old: Project = make_project(SERVE, name="old")
    new: Project = make_project(SERVE, name="new", home=old.home)
    daemon = start_serving(old)
    new.cli("start", "--takeover", check=True)
    assert not wait_dead([daemon], timeout=15)
    status = old.cli("status")
    assert status.returncode == 1
    assert "ended at" in status.stdout and "lease lost" in status.stdout and "took over" in status.stdout
    last = json.loads(old.cli("status", "--json").stdout)["daemon"]["last_exit"]
    assert last["pid"] == daemon.pid and last["reason"].startswith("lease lost") and not last["crashed"]
    again = old.cli("start")
    assert "the previous supervisor" in again.stdout and "lease lost" in again.stdout
