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
NOTIFY_WAIT_S = 60.0  # READY comes ~0.4 s after the start idle, ~2.5 s beside mypy and busy loops


def _next_datagram(sock: socket.socket, proc: subprocess.Popen[str], stderr: Path, what: str) -> str:
    """The next sd_notify message; fails at once, with the daemon's own words, if the daemon exits first."""
    deadline = time.monotonic() + NOTIFY_WAIT_S
    while True:
        sock.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
        try:
            return sock.recv(4096).decode()
        except TimeoutError:
            pass
        code = proc.poll()
        if code is not None or time.monotonic() >= deadline:
            why = f"exited with {code}" if code is not None else f"sent nothing for {NOTIFY_WAIT_S:g} s"
            raise AssertionError(f"waiting for {what}: the daemon {why}; its stderr:\n{stderr.read_text()[-3000:]}")


def test_foreground_sd_notify_and_redaction(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(BODY)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    # Files, not pipes: nobody reads the daemon's console until it exits, and a full pipe would block it.
    stderr_path = tmp_path / "daemon.stderr"
    with stderr_path.open("w") as stderr, (tmp_path / "daemon.stdout").open("w") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "f5guard", "run", "--foreground", "--config", str(p.config)],
            env={**p.env, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"},
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
    try:
        messages = [_next_datagram(sock, proc, stderr_path, "READY=1")]
        assert messages[0].startswith("READY=1")
        watchdog = _next_datagram(sock, proc, stderr_path, "the first WATCHDOG=1")
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
        while "STOPPING=1" not in messages:
            messages.append(_next_datagram(sock, proc, stderr_path, "STOPPING=1"))
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    err = stderr_path.read_text()
    assert proc.returncode == 0, err
    assert "daemon ready" in err, "foreground mode logs to the console"
    everything = "".join(path.read_text(errors="replace") for path in p.work.rglob("*") if path.is_file())
    everything += "".join(path.read_text(errors="replace") for path in p.home.rglob("*") if path.is_file())
    everything += err
    assert "hf_supersecretvalue123" not in everything
    assert "token is ***" in (p.work / "logs" / "r" / "leak.log").read_text()
    assert os.environ.get("NOTIFY_SOCKET") is None
