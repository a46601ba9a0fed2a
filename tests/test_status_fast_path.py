"""`f5guard status` with a daemon running is answered by the daemon (same report, same renderer) without the
client importing click, the config schema or rich; anything unusual falls back to the full CLI."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from f5guard import config, pidfile
from f5guard.layout import WorkLayout
from f5guard.status import answer, quick
from tests.conftest import Project, write_config

BODY = """
[[runs]]
name = "r"
[[runs.stages]]
name = "serve"
long_running = true
command = ["sleep", "600"]
"""


def full_status(p: Project, *args: str) -> subprocess.CompletedProcess[str]:
    """The full CLI path (click + config + report), bypassing the fast path."""
    code = "import sys\nfrom f5guard.cli.app import run\nrun(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, "status", *args, "--config", str(p.config)],
        capture_output=True,
        text=True,
        env=p.env,
        timeout=60,
    )


def stable(report: dict) -> dict:
    daemon = {k: v for k, v in report["daemon"].items() if k not in ("uptime_s", "heartbeat_age_s", "last_known")}
    runs = [
        {**run, "stages": [{k: v for k, v in s.items() if k != "duration_s"} for s in run["stages"]]}
        for run in report["runs"]
    ]
    claims = [{k: v for k, v in c.items() if k != "heartbeat_age_s"} for c in report["claims"]]
    return {**report, "daemon": daemon, "runs": runs, "lease": None, "state": None, "claims": claims}


def test_fast_path_matches_the_full_cli(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(BODY)
    p.cli("start", check=True)
    p.wait_for(lambda: p.stage_state("r", "serve") == "running", what="serving")
    requests = p.work / "status-requests"
    fast = p.cli("status", "--json")
    assert fast.returncode == 0
    assert requests.is_dir() and not list(requests.iterdir()), "the daemon answered and the files are gone"
    slow = full_status(p, "--json")
    assert stable(json.loads(fast.stdout)) == stable(json.loads(slow.stdout))
    text_fast, text_slow = p.cli("status"), full_status(p)
    assert text_fast.returncode == text_slow.returncode == 0
    strip = lambda t: [line.split(" · up ")[0] for line in t.splitlines() if "serve" not in line]  # noqa: E731
    assert strip(text_fast.stdout) == strip(text_slow.stdout)


def test_client_imports_stay_tiny() -> None:
    code = (
        "import sys\nimport f5guard.cli, f5guard.status.quick\n"
        "print(','.join(m for m in ('click', 'json', 'rich', 'dataclasses', 'pathlib', 'tomllib', 'f5guard.config',"
        " 'contextlib', 'signal', 'enum') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_the_client_pokes_the_signal_the_daemon_handles() -> None:
    """The client names SIGUSR2 by number (no signal/enum import); it must be the daemon's signal.SIGUSR2."""
    assert quick.sigusr2() == signal.SIGUSR2


def test_falls_back_when_the_daemon_cannot_answer(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(BODY)
    p.cli("start", check=True)
    p.wait_for(lambda: p.stage_state("r", "serve") == "running", what="serving")
    daemon = psutil.Process(p.daemon_pid() or 0)
    daemon.suspend()
    try:
        t0 = time.monotonic()
        report = json.loads(p.cli("status", "--json", check=True).stdout)
        took = time.monotonic() - t0
    finally:
        daemon.resume()
    assert report["daemon"]["running"] and report["runs"][0]["stages"][0]["state"] == "running"
    assert took < 10
    assert not list((p.work / "status-requests").glob("*.req")), "an unanswered request is taken back"
    # An edited config is not the one the daemon runs: the full CLI answers (and reads the new file).
    p.config.write_text(p.config.read_text() + "\n# edited\n")
    assert json.loads(p.cli("status", "--json", check=True).stdout)["daemon"]["running"]


def test_the_client_copies_match_their_owners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The client may import nothing of f5guard, so it copies names: the config file and its variable, the work
    dir's flock and pidfile, the request and answer files. Each copy is tied to its owner here, in one process:
    the lock and pidfile made by the daemon's own code, the answer written by the daemon's own handler."""
    assert (quick.CONFIG_ENV, quick.CONFIG_NAME) == (config.CONFIG_ENV, config.CONFIG_NAME)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # the client looks for the config by its default name here
    write_config(tmp_path / config.CONFIG_NAME, tmp_path / "home", tmp_path / "work", BODY)
    loaded = config.load_config(tmp_path / config.CONFIG_NAME)
    work = WorkLayout(loaded.work)
    work.root.mkdir(parents=True)
    me = pidfile.DaemonInfo(os.getpid(), "host", time.time(), "boot", str(loaded.path), "0", phase="ready")
    pidfile.write(work.pidfile, me)
    lock = os.open(work.lock, os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another open file: the client's shared lock conflicts even in this process
    answer.note_work_dir(loaded)
    previous = signal.signal(signal.SIGUSR2, lambda *_: answer.answer_requests(loaded))
    try:
        code = quick.try_quick_status(["--json"])
    finally:
        signal.signal(signal.SIGUSR2, previous)
        os.close(lock)
    assert code is not None, "the client found the daemon, dropped a request and read the answer"
    assert json.loads(capsys.readouterr().out)["runs"][0]["name"] == "r"
