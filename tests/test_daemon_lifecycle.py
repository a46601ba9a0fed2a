"""start -> status -> stop with real processes; no process survives; start while running is a no-op."""

from __future__ import annotations

import time

import psutil

from tests.conftest import Project, is_dead, pids_of_stage, wait_dead

PIPELINE = """
[[runs]]
name = "speaker"
[[runs.stages]]
name = "make"
command = ["sh", "-c", "echo making; printf data > {work}/a.txt"]
outputs = ["{work}/a.txt"]
[[runs.stages]]
name = "use"
inputs = ["{work}/a.txt"]
command = ["sh", "-c", "tr a-z A-Z < {work}/a.txt > {work}/b.txt"]
outputs = ["{work}/b.txt"]
[[runs.stages]]
name = "serve"
long_running = true
command = ["sh", "-c", "sleep 300 & sleep 300; wait"]
"""


def test_start_status_stop(make_project) -> None:  # type: ignore[no-untyped-def]
    """The daemon detaches, runs the pipeline, reports it, and stop leaves nothing behind."""
    p: Project = make_project(PIPELINE)
    t0 = time.monotonic()
    started = p.cli("start", check=True)
    assert time.monotonic() - t0 < 10
    assert "f5guard started" in started.stdout and "tail -f" in started.stdout
    daemon_pid = p.daemon_pid()
    assert daemon_pid is not None
    daemon = psutil.Process(daemon_pid)
    assert daemon.ppid() in (1, psutil.Process().pid) or daemon.ppid() != 0
    assert daemon.pid == __import__("os").getsid(daemon.pid), "the daemon leads its own session"

    p.wait_for(lambda: p.stage_state("speaker", "serve") == "running", what="serve running")
    assert (p.work / "b.txt").read_text() == "DATA"
    report = p.status()
    assert report["daemon"]["running"] and report["daemon"]["pid"] == daemon_pid
    assert report["daemon"]["epoch"] == 1 and report["daemon"]["heartbeat_age_s"] is not None
    stages = {s["name"]: s for s in report["runs"][0]["stages"]}
    assert stages["make"]["state"] == "done" and stages["make"]["duration_s"] is not None
    assert stages["use"]["state"] == "done"
    text = p.cli("status")
    assert text.returncode == 0 and "f5guard running" in text.stdout and "serve" in text.stdout

    again = p.cli("start")
    assert again.returncode == 0 and "already running" in again.stdout

    children = pids_of_stage(p)
    assert len(children) >= 2, "the serve stage and its background sleep"
    stopped = p.cli("stop", check=True)
    assert "stopped in" in stopped.stdout
    assert is_dead(daemon)
    alive = wait_dead(children, timeout=5)
    assert not alive, f"orphans after stop: {alive}"

    after = p.cli("status")
    assert after.returncode == 1 and "no f5guard supervisor runs here" in after.stdout
    report = p.status()
    assert not report["daemon"]["running"]
    assert report["runs"][0]["stages"][2]["state"] == "interrupted"


def test_status_reads_home_on_a_fresh_runtime(make_project) -> None:  # type: ignore[no-untyped-def]
    """A new work dir on the same home (a recycled VM) still shows what was last known, from home."""
    p: Project = make_project(PIPELINE.split('[[runs.stages]]\nname = "serve"', maxsplit=1)[0])
    p.cli("start", check=True)
    p.wait_run("speaker")
    p.cli("stop", check=True)
    fresh: Project = make_project(
        PIPELINE.split('[[runs.stages]]\nname = "serve"', maxsplit=1)[0], name="fresh", home=p.home
    )
    report = fresh.status()
    assert not report["daemon"]["running"]
    assert report["state"]["source"].startswith(str(p.home))
    assert [s["state"] for s in report["runs"][0]["stages"]] == ["done", "done"]
    assert report["daemon"]["last_known"]["pid"] is not None


def test_stop_when_nothing_runs(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(PIPELINE)
    proc = p.cli("stop")
    assert proc.returncode == 0 and "nothing to stop" in proc.stdout
