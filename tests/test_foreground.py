"""`f5guard run --foreground` under systemd's notify protocol, and secrets kept out of logs and state."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Project

BODY = """
[[runs]]
name = "r"
[[runs.stages]]
name = "leak"
env = { HF_TOKEN = "hf_supersecretvalue123" }
command = ["sh", "-c", "echo token is $HF_TOKEN; exec sleep 600"]
long_running = true
"""


def test_foreground_sd_notify_and_redaction(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(BODY)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    proc = subprocess.Popen(
        [sys.executable, "-m", "f5guard", "run", "--foreground", "--config", str(p.config)],
        env={**p.env, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        messages = [sock.recv(4096).decode()]
        assert messages[0].startswith("READY=1")
        watchdog = sock.recv(4096).decode()
        assert watchdog == "WATCHDOG=1"
        p.wait_for(
            lambda: (
                "token is" in (p.work / "logs" / "r" / "leak.log").read_text()
                if (p.work / "logs" / "r" / "leak.log").exists()
                else False
            ),
            what="stage output",
        )
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while "STOPPING=1" not in messages and time.monotonic() < deadline:
            messages.append(sock.recv(4096).decode())
        assert "STOPPING=1" in messages
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    assert proc.returncode == 0
    assert "daemon ready" in err, "foreground mode logs to the console"
    everything = "".join(path.read_text(errors="replace") for path in p.work.rglob("*") if path.is_file())
    everything += "".join(path.read_text(errors="replace") for path in p.home.rglob("*") if path.is_file())
    everything += err
    assert "hf_supersecretvalue123" not in everything
    assert "token is ***" in (p.work / "logs" / "r" / "leak.log").read_text()
    assert os.environ.get("NOTIFY_SOCKET") is None
