"""`f5guard status` with a daemon running is answered by the daemon (same report, same renderer) over the control
protocol, without the client importing click, the config schema or rich; anything unusual falls back to the
full CLI. The protocol's messages survive the wire, and a foreign request does no harm."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from f5guard import config
from f5guard.control.protocol import (
    ANSWERS,
    REQUESTS,
    START_REPORTS,
    AlreadyRunning,
    Done,
    ProtocolError,
    Ready,
    Refused,
    ResetRequest,
    RetryRequest,
    StartFailed,
    StatusAnswer,
    StatusRequest,
    StopRequest,
    WaitingLease,
    decode,
)
from f5guard.control.server import ControlServer
from f5guard.layout import WorkLayout
from f5guard.status import answer, quick
from f5guard.status.report import build_report
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
    fast = p.cli("status", "--json")
    assert fast.returncode == 0
    assert (p.work / "daemon.sock").is_socket(), "the daemon listens beside its lock"
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
        " 'contextlib', 'signal', 'enum', 're', 'socket', 'selectors') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


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
    # An edited config is not the one the daemon runs: the full CLI answers (and reads the new file).
    p.config.write_text(p.config.read_text() + "\n# edited\n")
    assert json.loads(p.cli("status", "--json", check=True).stdout)["daemon"]["running"]


def test_the_client_copies_match_their_owners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The client may import nothing of f5guard but the protocol, so it copies names: the config file and its
    variable, and the daemon's note of its work dir. Each copy is tied to its owner here, in one process: the
    note written by the daemon's own code, the answer by the daemon's own server and handler. The work dir is
    deep (a socket address holds 108 bytes): the client and the server reach the socket through its folder."""
    assert (quick.CONFIG_ENV, quick.CONFIG_NAME) == (config.CONFIG_ENV, config.CONFIG_NAME)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # the client looks for the config by its default name here
    work_dir = tmp_path / ("deep-" * 20) / "work"
    write_config(tmp_path / config.CONFIG_NAME, tmp_path / "home", work_dir, BODY)
    loaded = config.load_config(tmp_path / config.CONFIG_NAME)
    work = WorkLayout(loaded.work)
    work.root.mkdir(parents=True)
    assert len(str(work.root / "daemon.sock")) > 108
    answer.note_work_dir(loaded)
    server = ControlServer(work.root, lambda: None)
    server.start()

    def daemon() -> None:  # the control loop's part: take the request, answer it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for pending in server.pending():
                request = pending.request
                assert isinstance(request, StatusRequest)
                pending.answer(answer.answer_status(build_report(loaded), request))
                return
            time.sleep(0.01)

    thread = threading.Thread(target=daemon)
    thread.start()
    try:
        code = quick.try_quick_status(["--json"])
    finally:
        thread.join()
        server.close()
    assert code is not None, "the client found the daemon, asked on its socket and read the answer"
    assert json.loads(capsys.readouterr().out)["runs"][0]["name"] == "r"
    assert not (work.root / "daemon.sock").exists(), "the server removes its socket"


def test_every_message_survives_the_wire() -> None:
    """Values with the separators in them (spaces, newlines, %, =) and bodies come back equal; a garbled or
    foreign line is a ProtocolError, never a wrong message."""
    messages = [
        StatusRequest(as_json=True, columns=173, color=False),
        StopRequest(),
        ResetRequest("my voice %20=x", None),
        ResetRequest("r", "train\nstage"),
        RetryRequest(),
        StatusAnswer(1, "line one\nline two: ü [red]x[/]\n"),
        Done(""),
        Refused("no run named 'x'", 2),
        Ready(41, 3, "/work dir/logs/daemon.jsonl"),
        WaitingLease("host a pid 7", 42.5, True),
        StartFailed("cannot create /x: Permission denied", 3),
        AlreadyRunning(None),
    ]
    kinds = REQUESTS + ANSWERS + START_REPORTS
    data = b"".join(m.encode() for m in messages)
    back = []
    while data:
        message, data = decode(data, kinds)
        back.append(message)
    assert back == messages
    for bad in (b"hello\n", b"status as_json=1\n", b"reset\n", b"done length=9\nshort", b"\xff\n", b"stop"):
        with pytest.raises(ProtocolError):
            decode(bad, kinds)


def test_a_foreign_request_is_refused_and_the_daemon_goes_on(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(BODY)
    p.cli("start", check=True)
    p.wait_for(lambda: p.stage_state("r", "serve") == "running", what="serving")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(p.work / "daemon.sock"))
        sock.sendall(b"GET / HTTP/1.0\n\n")
        reply = sock.recv(65536)
    refused, _ = decode(reply, ANSWERS)
    assert isinstance(refused, Refused) and refused.code == 2 and "not a request" in refused.text
    assert p.cli("status").returncode == 0


def test_the_daemon_answers_from_its_memory_not_from_the_file_it_wrote(make_project) -> None:  # type: ignore[no-untyped-def]
    """Defect (issue 18): to answer status the daemon re-read the state.json it had just written. With every
    copy of the file gone (a cleaned work dir, a Drive that lost the home copy) it still knows what runs."""
    p: Project = make_project(BODY)
    p.cli("start", check=True)
    p.wait_for(lambda: p.stage_state("r", "serve") == "running", what="serving")
    for copy in [p.work / "state.json", *(p.home / ".f5guard").glob("state-*.json")]:
        copy.unlink()
    report = json.loads(p.cli("status", "--json", check=True).stdout)
    assert report["runs"][0]["stages"][0]["state"] == "running"
    assert report["state"]["generation"] > 0 and report["state"]["source"] == str(p.work / "state.json")
