"""Status states only what it checked (invariant 9), with or without a daemon: never "safe" about a checkpoint
file that is absent, empty or a folder; no speed or ETA when no trainer runs; a home state copy with an absurd
epoch is not taken over the live one; the footer does not suggest a start that would be refused; a SIGSTOPped
daemon is "frozen", and `stop` continues it; `start --accept-older` reaches a daemon that waits for a checkpoint.

Most cases build the report in-process from hand-written files (the report reads files only): fast."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from f5guard import pidfile
from f5guard.config import load_config
from f5guard.layout import HomeLayout, WorkLayout
from f5guard.machine import boot_id
from f5guard.state import StageRecord, StageStatus, StateDoc, StateStore, TrainingRecord
from f5guard.status.render import make_console, render_status
from f5guard.status.report import StatusReport, build_report
from tests.conftest import Project, wait_dead, write_config
from tests.test_control_without_config import SERVE, start_serving
from tests.test_home_vanishes import train_body, training

TRAIN = """
[[runs]]
name = "voice"
[[runs.stages]]
name = "train"
type = "train"
mode = "command"
checkpoint_dir = "{work}/ckpts"
command = ["true"]
"""


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, WorkLayout, HomeLayout]:
    home, work, config = tmp_path / "home", tmp_path / "work", tmp_path / "f5guard.toml"
    home.mkdir()
    work.mkdir()
    write_config(config, home, work, TRAIN)
    return config, WorkLayout(work), HomeLayout(home)


def text_of(report: StatusReport) -> str:
    buffer = io.StringIO()
    render_status(report, make_console(160, file=buffer, color=False))
    return buffer.getvalue()


def save_state(work: WorkLayout, **training: object) -> StateDoc:
    doc = StateDoc(epoch=1)
    doc.daemon.update(pid=4242, host="here", started_at=time.time() - 60, boot_id=boot_id(), version="x")
    doc.stage("voice", "train").state = StageStatus.RUNNING
    doc.run("voice").training = TrainingRecord(**training)  # type: ignore[arg-type]
    StateStore(work.state, work.root / "none").save(doc)
    return doc


@contextlib.contextmanager
def daemon_running(work: WorkLayout) -> Iterator[None]:
    """What a running daemon shows the report: the work dir's flock held, and a pidfile."""
    fd = os.open(work.lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    pidfile.write(work.pidfile, pidfile.DaemonInfo(os.getpid(), "here", time.time() - 5, boot_id(), "c", "x", 1,
                                                   "ready"))  # fmt: skip
    try:
        yield
    finally:
        os.close(fd)
        work.pidfile.unlink()


@pytest.mark.parametrize("what", ["absent", "empty", "folder", "other size"])
def test_never_safe_about_a_checkpoint_that_is_not_there(project, what: str) -> None:  # type: ignore[no-untyped-def]
    config, work, home = project
    path = home.checkpoints("voice") / "ckpt-e0001-u000000040.pt"
    path.parent.mkdir(parents=True)
    if what == "empty":
        path.write_bytes(b"")
    elif what == "folder":
        path.mkdir()
    elif what == "other size":
        path.write_bytes(b"x" * 100)
    save_state(work, update=43, durable_update=40, durable_path=str(path), durable_size=1234,
               durable_synced_at=time.time() - 30)  # fmt: skip
    report = build_report(load_config(config, find_python=False))
    text = text_of(report)
    assert "safe on home" not in text, text
    assert report["runs"][0]["training"]["durable_update"] is None
    assert "missing, empty or not what was synced" in text


def test_safe_when_the_file_is_there(project) -> None:  # type: ignore[no-untyped-def]
    """The same state with the file in place: the check above can fail."""
    config, work, home = project
    path = home.checkpoints("voice") / "ckpt-e0001-u000000040.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x" * 1234)
    save_state(work, update=43, durable_update=40, durable_path=str(path), durable_size=1234,
               durable_synced_at=time.time() - 30)  # fmt: skip
    assert "checkpoint safe on home: update 40" in text_of(build_report(load_config(config, find_python=False)))


def test_no_speed_or_eta_while_training_waits(project) -> None:  # type: ignore[no-untyped-def]
    """A fresh work dir waiting for a checkpoint: the figures state carries are from a trainer that is gone."""
    config, work, _home = project
    save_state(work, update=43, total_updates=1000, updates_per_s=3.33,
               waiting="waiting for checkpoint u400 to arrive from Drive")  # fmt: skip
    with daemon_running(work):
        report = build_report(load_config(config, find_python=False))
    text = text_of(report)
    assert "upd/s" not in text and "ETA" not in text, text
    assert "waiting for checkpoint u400" in text


def test_no_speed_or_eta_without_a_daemon(project) -> None:  # type: ignore[no-untyped-def]
    config, work, _home = project
    save_state(work, update=43, total_updates=1000, updates_per_s=3.33)
    training_report = build_report(load_config(config, find_python=False))["runs"][0]["training"]
    assert training_report["updates_per_s"] is None and training_report["eta_s"] is None
    assert training_report["update"] == 43, "where it got to stays shown"


@pytest.mark.parametrize("epoch", [2**63, 10**10, -1, "7", 1.5, True])
def test_a_home_copy_with_an_absurd_epoch_is_not_the_state(project, epoch: object) -> None:  # type: ignore[no-untyped-def]
    config, work, home = project
    save_state(work, update=43)
    copy = StateDoc(epoch=1, generation=99).to_json()
    copy["epoch"] = epoch
    copy["runs"] = {"voice": {"state": "done", "stages": {}, "training": {"update": 999_999}}}
    home.lease_dir.mkdir()
    (home.lease_dir / "state-e0001-zz.json").write_text(json.dumps(copy))
    with daemon_running(work):
        report = build_report(load_config(config, find_python=False))
    assert report["state"]["source"] == str(work.state), report["state"]
    assert report["runs"][0]["training"]["update"] == 43
    assert any("state-e0001-zz.json" in problem for problem in report["state"]["problems"])


def test_a_state_copy_with_wrong_types_is_shown_without_them(project) -> None:  # type: ignore[no-untyped-def]
    """A string where a number belongs, NaN, a list where a note belongs: dropped with a warning, the rest kept
    (the renderer's format specs raised on them: a traceback in status)."""
    config, work, _home = project
    doc = StateDoc(epoch=1).to_json()
    doc["runs"] = {"voice": {"state": "running", "reason": 5, "stages": {
        "train": {**json.loads(json.dumps(StageRecord().__dict__, default=str)), "state": "running",
                  "restarts": "many", "duration_s": "NaN", "last_lines": [1, 2]},
        "ghost": {"state": "exploded"}}, "training": {
        "update": "43", "loss": float("nan"), "eta_s": float("inf"), "durable_update": 12.5,
        "setup": ["not", "a", "note"], "quarantined": [{"name": 1}], "total_updates": 100}}}  # fmt: skip
    work.state.write_text(json.dumps(doc))
    report = build_report(load_config(config, find_python=False))
    text = text_of(report)
    t = report["runs"][0]["training"]
    assert t["update"] is None and t["loss"] is None and t["setup"] is None and t["total_updates"] == 100
    assert report["runs"][0]["stages"][0]["restarts"] == 0
    assert any("restarts" in problem for problem in report["state"]["problems"]), report["state"]["problems"]
    assert "run voice" in text


def test_the_footer_does_not_suggest_a_refused_start(project) -> None:  # type: ignore[no-untyped-def]
    config, _work, home = project
    home.claims.mkdir(parents=True)
    runtime = {"host": "colab-other", "boot_id": "b" * 32, "pidns": "pid:[1]", "pid": 77, "pid_started": 5}
    claim = {"runtime": runtime, "epoch": 3, "work": "/content/work", "since": time.time(), "released": False}
    (home.claims / "colab-other-bbbbbbbb-77-5.json").write_text(json.dumps(claim))  # named as claims.py names it
    text = text_of(build_report(load_config(config, find_python=False)))
    assert "Start (or resume) it with: f5guard start" not in text, text
    assert "f5guard start --takeover" in text and "colab-other" in text


def test_a_frozen_daemon_is_said_and_stop_continues_it(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(SERVE)
    daemon = start_serving(p)
    daemon.send_signal(signal.SIGSTOP)
    try:
        status = p.cli("status")
        assert "frozen" in status.stdout and f"kill -CONT {daemon.pid}" in status.stdout, status.stdout
        assert p.status()["daemon"]["phase"] == "frozen"
        started = time.monotonic()
        stop = p.cli("stop", "--timeout", "30")
        assert stop.returncode == 0 and "stopped in" in stop.stdout, stop.stdout + stop.stderr
        assert "SIGSTOP" in stop.stdout and time.monotonic() - started < 20
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon.pid, signal.SIGCONT)
    assert not wait_dead([daemon], timeout=10)


def test_accept_older_reaches_a_daemon_that_waits_for_a_checkpoint(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Home's records name update 400, which never arrives: the daemon waits, and its status suggests
    `--accept-older`; `start --accept-older` then resumes from what is here (it answered "already running")."""
    p: Project = make_project("", name="p")
    p.config.write_text(p.config.read_text() + train_body(tmp_path, p.work))
    elsewhere = StateDoc(epoch=1, generation=5)
    elsewhere.daemon["runtime"] = "other-vm"
    elsewhere.run("voice").training = TrainingRecord(durable_update=400)
    (p.home / ".f5guard").mkdir(parents=True)
    (p.home / ".f5guard" / "state-e0001-other-vm.json").write_text(json.dumps(elsewhere.to_json()))
    p.cli("start", check=True)
    p.wait_for(lambda: "u400" in str(training(p).get("waiting")), timeout=30, what="waiting for u400")
    assert "--accept-older" in p.cli("status").stdout
    again = p.cli("start", "--accept-older")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "accept-older" in again.stdout, again.stdout
    p.wait_for(lambda: (training(p).get("update") or 0) >= 3, timeout=60, what="training from what is here")
    p.cli("stop", "--timeout", "30", check=True)
