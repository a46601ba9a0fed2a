"""``f5guard run --foreground --until-done``: a batch job's exit codes, from the real daemon and the torch-free
trainer stand-in (tests/drive_runtime.py), run the way SkyPilot runs a task's ``run`` (a bash script that keeps
the command's code): done, failed, a config error and a FATAL diagnosis are never recovered; a stop by signal
before the end and a SIGKILL are (daemon/exitcodes.py ``RECOVER``, the task's ``recover_on_exit_codes``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import psutil
import pytest

from f5guard.daemon import exitcodes
from tests.conftest import Project, wait_dead
from tests.drive_runtime import Training, train_stage

pytestmark = pytest.mark.timeout(120)

STEP_S = 0.02


def _project(make_project: Callable[..., Project], training: Training, extra: str = "") -> Project:
    project = make_project("")
    stage = train_stage(project.root, project.work / "ckpts", project.root / "events.jsonl", "vm", training)
    with project.config.open("a") as handle:
        handle.write(f'[[runs]]\nname = "voice"\n{extra}{stage}')
    return project


def _job(project: Project) -> subprocess.Popen[str]:
    """The command as SkyPilot's run script holds it: bash keeps its code (it does not exec the last command)."""
    command = f"{sys.executable} -m f5guard run --foreground --until-done --config {project.config}"
    return subprocess.Popen(["bash", "-c", f'{command}; code=$?; exit "$code"'], cwd=project.root, env=project.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _finish(job: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    out, _ = job.communicate(timeout=timeout)
    return job.returncode, out


def _manifests(project: Project) -> list[int]:
    folder = project.home / "runs" / "voice" / "checkpoints"
    return sorted(json.loads(p.read_text())["update"] for p in folder.glob("ckpt-*.json"))


def _wait_training(project: Project) -> int:
    """The daemon's pid, once its trainer has saved a checkpoint that reached home."""
    project.wait_for(lambda: _manifests(project), timeout=30, what="a durable checkpoint")
    pid = project.daemon_pid()
    assert pid is not None
    return pid


def test_done_exits_0_after_the_final_checkpoint_is_on_home(make_project: Callable[..., Project]) -> None:
    """The trainer finishes at u12: the daemon exits 0 by itself, with u12 on home, and says why it left."""
    project = _project(make_project, Training(STEP_S, save_every=5, ckpt_bytes=4096, total=12))
    code, out = _finish(_job(project))
    assert code == exitcodes.DONE, out
    assert _manifests(project)[-1] == 12, out
    note = json.loads((project.work / "daemon.exit.json").read_text())
    assert "every run finished" in note["reason"], note
    assert exitcodes.DONE not in exitcodes.RECOVER


def test_a_failed_stage_exits_1_and_a_config_error_2(make_project: Callable[..., Project]) -> None:
    """A stage that fails (no restart judgment for a one-shot stage): 1. A config with a typo: 2. Neither is in
    what SkyPilot recovers: a new VM would fail the same way."""
    failing = '[[runs.stages]]\nname = "fetch"\ncommand = ["{python}", "-c", "raise SystemExit(3)"]\n'
    project = _project(make_project, Training(STEP_S, save_every=5, ckpt_bytes=4096, total=5), extra=failing)
    code, out = _finish(_job(project))
    assert code == exitcodes.FAILED, out
    assert project.status()["runs"][0]["state"] == "failed"
    with project.config.open("a") as handle:
        handle.write("\n[lease]\n")  # a second [lease] table: invalid TOML
    code, out = _finish(_job(project))
    assert code == exitcodes.USAGE, out
    assert "invalid TOML" in out
    assert not {exitcodes.FAILED, exitcodes.USAGE} & set(exitcodes.RECOVER)


def test_the_same_crash_at_the_same_update_twice_is_fatal_exit_4(make_project: Callable[..., Project]) -> None:
    """The trainer crashes at u7, is restarted from u5, crashes at u7 again: FATAL with a diagnosis, exit 4."""
    project = _project(make_project, Training(STEP_S, save_every=5, ckpt_bytes=4096, crash_at=7))
    code, out = _finish(_job(project))
    assert code == exitcodes.FATAL, out
    run = project.status()["runs"][0]
    assert run["state"] == "fatal", run
    assert exitcodes.FATAL not in exitcodes.RECOVER


def test_a_signal_before_the_end_and_a_kill_are_recovered(make_project: Callable[..., Project]) -> None:
    """SIGTERM to the daemon while it trains (a preempted VM shutting down): it stops gracefully and exits 75,
    never 0 (SkyPilot would call the job succeeded). SIGKILL (the OOM killer, the VM going away): the job's shell
    reports 137. Both codes are in RECOVER; the trainer does not outlive either."""
    project = _project(make_project, Training(STEP_S, save_every=5, ckpt_bytes=4096))
    job = _job(project)
    pid = _wait_training(project)
    os.kill(pid, signal.SIGTERM)
    code, out = _finish(job)
    assert code == exitcodes.INTERRUPTED, out
    assert code in exitcodes.RECOVER

    job = _job(project)
    project.wait_for(lambda: project.daemon_pid() not in (None, pid), timeout=30, what="the second daemon")
    pid = _wait_training(project)
    children = psutil.Process(pid).children(recursive=True)
    time.sleep(0.3)  # let it train a little
    os.kill(pid, signal.SIGKILL)
    code, out = _finish(job)
    assert code == exitcodes.KILLED == 128 + signal.SIGKILL, out
    assert code in exitcodes.RECOVER
    assert not wait_dead(children), "the trainer outlived its killed daemon"


def test_error_codes_map_by_kind() -> None:
    """Errors that end the daemon: config/usage 2, another owner 3, home unreachable 74 (recovered), others 1."""
    from f5guard.errors import ConfigError, DaemonError, HomeUnreachable, LeaseHeld, LeaseLost, UsageError
    from f5guard.state import RunStatus

    assert exitcodes.for_error(ConfigError("x")) == exitcodes.for_error(UsageError("x")) == exitcodes.USAGE == 2
    assert exitcodes.for_error(LeaseHeld("x")) == exitcodes.for_error(LeaseLost("x")) == exitcodes.LEASE == 3
    assert exitcodes.for_error(HomeUnreachable("x")) == exitcodes.HOME in exitcodes.RECOVER
    assert exitcodes.for_error(DaemonError("x")) == exitcodes.FAILED
    assert exitcodes.for_runs([RunStatus.DONE, RunStatus.RUNNING]) is None
    assert exitcodes.for_runs([RunStatus.FAILED, RunStatus.FATAL, RunStatus.DONE]) == exitcodes.FATAL
    assert exitcodes.for_runs([RunStatus.DONE, RunStatus.FAILED]) == exitcodes.FAILED
    assert exitcodes.for_runs([RunStatus.DONE, RunStatus.DONE]) == exitcodes.DONE
