"""Shared fixtures: a temp project (config, home, work) and a CLI runner that runs the real `f5guard`.

Every daemon a test starts is stopped at teardown, and the test fails if any process it started survives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

pytest_plugins = ["tests.f5_fixtures"] if (Path(__file__).parent / "f5_fixtures.py").exists() else []

CLI_TIMEOUT_S = 120


@dataclass
class Project:
    """A config file with its home and work dirs, and a way to run `f5guard` against it."""

    root: Path
    home: Path
    work: Path
    config: Path
    env: dict[str, str] = field(default_factory=dict)

    def cli(
        self, *args: str, check: bool | None = None, timeout: float = CLI_TIMEOUT_S, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "f5guard", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            env={**self.env, **(env or {})},
        )
        if check:
            assert proc.returncode == 0, f"f5guard {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def status(self) -> dict:
        proc = self.cli("status", "--json")
        return json.loads(proc.stdout)

    def daemon_pid(self) -> int | None:
        try:
            return int(json.loads((self.work / "daemon.pid.json").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def state(self) -> dict:
        return json.loads((self.work / "state.json").read_text())

    def stage_state(self, run: str, stage: str) -> str | None:
        for r in self.status()["runs"]:
            if r["name"] == run:
                for s in r["stages"]:
                    if s["name"] == stage:
                        return s["state"]
        return None

    def wait_for(self, predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; status: {self.cli('status').stdout}")

    def wait_run(self, run: str, states: tuple[str, ...] = ("done",), timeout: float = 60.0) -> dict:
        def check() -> dict | None:
            for r in self.status()["runs"]:
                if r["name"] == run and r["state"] in states:
                    return r
            return None

        return self.wait_for(check, timeout, f"run {run} in {states}")  # type: ignore[return-value]


FAST_LEASE = """
[lease]
duration_s = 2
heartbeat_s = 0.5
takeover_slack_s = 1
epoch_poll_s = 0.2
settle_s = 0.3
retention_delay_s = 0
"""


def write_config(path: Path, home: Path, work: Path, body: str, *, lease: str = FAST_LEASE) -> None:
    path.write_text(f'home = "{home}"\nwork = "{work}"\n' + textwrap.dedent(lease) + textwrap.dedent(body))


@pytest.fixture
def make_project(tmp_path: Path) -> Iterator[Callable[..., Project]]:
    """Build projects (several may share one home: two runtimes); tears down their daemons and children."""
    made: list[Project] = []
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    def make(body: str, *, name: str = "p", home: Path | None = None, lease: str = FAST_LEASE) -> Project:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        home = home or tmp_path / "home"
        home.mkdir(parents=True, exist_ok=True)
        work = root / "work"
        config = root / "f5guard.toml"
        write_config(config, home, work, body, lease=lease)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("F5GUARD_", "NOTIFY_SOCKET"))}
        project = Project(root=root, home=home, work=work, config=config, env=env)
        made.append(project)
        return project

    yield make
    leftovers: list[str] = []
    for project in made:
        pid = project.daemon_pid()
        if pid and psutil.pid_exists(pid):
            project.cli("stop", "--timeout", "20")
    for project in made:
        for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
            try:
                cmd = " ".join(proc.info["cmdline"] or [])
                env = proc.info["environ"] or {}
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
            except (psutil.Error, TypeError):
                continue
            if str(project.config) in cmd or env.get("F5GUARD_WORK") == str(project.work):
                leftovers.append(f"{proc.pid}: {cmd}")
                proc.kill()
    del before
    assert not leftovers, f"processes survived the test: {leftovers}"


def pids_of_stage(project: Project) -> list[psutil.Process]:
    """Live processes started by this project's daemon (stages carry F5GUARD_WORK in their env)."""
    found = []
    for proc in psutil.process_iter(["pid", "environ"]):
        try:
            if (proc.info["environ"] or {}).get("F5GUARD_WORK") == str(project.work):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def is_dead(proc: psutil.Process) -> bool:
    """Exited (a zombie counts: in containers whose PID 1 does not reap, orphans stay zombies)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_dead(procs: list[psutil.Process], timeout: float = 10.0) -> list[psutil.Process]:
    """Processes still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not is_dead(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if not is_dead(p)]
    return alive


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
