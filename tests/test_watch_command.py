"""`f5guard watch`: a real daemon runs a short pipeline (an item stage, a torch-free trainer) and the watch
follows it to the end in each way it draws; a failed run ends it with exit 1 and the reason; interrupting it
ends only the watch; with no daemon it says so. (The notebook's last cell runs it: test_notebook.py.)"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import psutil
import pytest

from f5guard.cli.watch import pick_mode
from tests.conftest import Project
from tests.watch_support import pipeline, watch_argv

PROGRESS = ("█", "░")


def colab_view(raw: str) -> str:
    """What Colab's output area shows: a carriage return clears back to the last newline (colabtools#166)."""
    shown: list[str] = []
    for char in raw:
        if char == "\r":
            while shown and shown[-1] != "\n":
                shown.pop()
        else:
            shown.append(char)
    return "".join(shown)


def jupyter_view(raw: str) -> str:
    """What Jupyter shows: after a carriage return the text overwrites the line from its start."""
    lines = []
    for text in raw.split("\n"):
        row: list[str] = []
        for piece in text.split("\r"):
            row[: len(piece)] = piece
        lines.append("".join(row))
    return "\n".join(lines)


def _watch(p: Project, out: Path, *args: str) -> subprocess.Popen[bytes]:
    """The watch with its stdout in ``out`` and its stderr in ``out``.err."""
    with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
        return subprocess.Popen([*watch_argv(*args), "--config", str(p.config)], stdout=stdout, stderr=stderr,
                                cwd=p.root, env=p.env)  # fmt: skip


def _err(out: Path) -> str:
    return out.with_suffix(".err").read_text()


def test_both_notebook_modes_follow_a_real_run_to_the_end(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project("")
    p.config.write_text(p.config.read_text() + pipeline(p.root, items=8, item_s=0.4, updates=40, step_s=0.12))
    p.cli("start", check=True)
    lines_out, cr_out = tmp_path / "lines.out", tmp_path / "cr.out"
    lines = _watch(p, lines_out, "--mode", "lines", "--every", "0.5")
    cr = _watch(p, cr_out, "--mode", "cr", "--every", "0.3")
    assert lines.wait(timeout=60) == 0, _err(lines_out)
    assert cr.wait(timeout=60) == 0, _err(cr_out)

    # lines: one plain line per progress report, the events between them; nothing redrawn
    text = lines_out.read_text()
    assert "\r" not in text and "\x1b" not in text
    assert "watching voice (supervisor pid" in text.splitlines()[0]
    bars = [x for x in text.splitlines() if "█" in x or "░" in x]
    assert any("/8 items" in x for x in bars), text
    assert any("update " in x and "/40" in x and "loss " in x and "upd/s" in x for x in bars), text
    for event in ("voice/cut done in", "voice/train started", "voice: checkpoint update", "voice/train done in"):
        assert event in text, (event, text)
    assert text.splitlines()[-1].endswith("run voice done")
    assert "update 40 on home" in text

    # cr: every redraw starts with a carriage return; no cursor movement (Colab ignores it); what Colab and
    # Jupyter show at the end is the events and the final line, with no stale progress bar left over
    raw = cr_out.read_bytes().decode()
    assert raw.count("\r") > 5 and "\x1b" not in raw
    redraws = [x for x in raw.split("\r") if "stage 2/2 train" in x and "\n" not in x]
    assert len(redraws) >= 2, "the training line was redrawn in place"
    for shown in (colab_view(raw), jupyter_view(raw)):
        visible = [x.rstrip() for x in shown.splitlines()]
        assert not any(c in x for x in visible for c in PROGRESS), visible
        assert "voice/cut done in" in shown and "voice/train done in" in shown
        assert visible[-1].endswith("run voice done") and "voice: done" in visible[-2], visible
        assert len(visible) < 20, "one line per event, not one per redraw"


def test_a_failed_run_ends_the_watch_with_exit_1_and_the_reason(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project("")
    p.config.write_text(p.config.read_text() + pipeline(p.root, items=2, item_s=0.1, fail=True))
    p.cli("start", check=True)
    proc = subprocess.run([*watch_argv("--mode", "lines"), "--config", str(p.config)], capture_output=True,
                          text=True, timeout=60, cwd=p.root, env=p.env)  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("f5guard: run voice failed:")
    assert "stage 'bad' failed: exit code 3" in proc.stderr, proc.stderr
    assert "voice: failed: stage 'bad' failed" in proc.stdout.splitlines()[-1], proc.stdout


def _wait_text(path: Path, needle: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_bytes().decode(errors="replace") if path.exists() else ""
        if needle in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"no {needle!r} in {path}: {text!r}")


def _on_pty(argv: list[str], p: Project, rows: int, cols: int, **extra: str) -> tuple[subprocess.Popen[bytes], int]:
    """The watch on a pseudo-terminal of this size, as Colab's `!` runs it (0x0) or a terminal does."""
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {k: v for k, v in p.env.items() if k not in ("COLAB_RELEASE_TAG", "JPY_PARENT_PID", "COLUMNS", "LINES")}
    proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, cwd=p.root,
                            env={**env, "TERM": "xterm", **extra})  # fmt: skip
    os.close(child)
    return proc, parent


def _drain(fd: int, proc: subprocess.Popen[bytes], until: bytes, timeout: float = 30) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and until not in got:
        try:
            if select.select([fd], [], [], 0.2)[0]:
                got += os.read(fd, 65536)
        except OSError:
            break
    return got


def test_interrupting_the_watch_leaves_the_daemon_running(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project("")
    p.config.write_text(p.config.read_text() + pipeline(p.root, items=400, item_s=0.1))
    p.cli("start", check=True)
    daemon = p.daemon_pid()
    assert daemon is not None
    unknown = p.cli("watch", "nobody")
    assert unknown.returncode == 2 and "no run named 'nobody'" in unknown.stderr and "voice" in unknown.stderr

    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        out = tmp_path / f"{sig.name}.out"
        proc = _watch(p, out, "--mode", "cr", "--every", "0.2")
        _wait_text(out, "items")
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == code
        assert _err(out) == "", "quiet: no traceback, no message"
        assert out.read_bytes().endswith(b"\n"), "the redrawn line is ended, nothing glued to it"
        assert psutil.pid_exists(daemon) and p.daemon_pid() == daemon
        assert p.stage_state("voice", "cut") == "running"
        assert not list((p.work / "status-requests").glob("*")), "no request or answer left behind"

    # auto: a pseudo-terminal of no size (Colab's `!`) or Jupyter's `!` (pexpect: 80 columns) gets carriage
    # returns, lines whole (the output area wraps them); a real terminal gets rich's view
    jupyter = {"JPY_PARENT_PID": str(os.getpid())}
    for (rows, cols), colab, extra in (((0, 0), True, {}), ((24, 80), True, jupyter), ((30, 140), False, {})):
        proc, fd = _on_pty([*watch_argv("--every", "0.2"), "--config", str(p.config)], p, rows, cols, **extra)
        seen = _drain(fd, proc, b"items")
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:  # read on: a full pty would block its writes
            seen += _drain(fd, proc, b"\0", timeout=0.2)
        seen += _drain(fd, proc, b"\0", timeout=0.2)
        os.close(fd)
        assert proc.wait(timeout=1) == 130
        assert b"items" in seen
        if colab:
            assert b"\r" in seen and b"\x1b[" not in seen.replace(b"\x1b[?25", b""), seen[-600:]
            assert b"stopping this watch never stops the supervisor" in seen, "not cut to the pty's width"
        else:
            assert b"\x1b[" in seen and b"\xe2\x94\x81" in seen, seen[-600:]  # cursor moves; rich's bar (━)
    assert psutil.pid_exists(daemon)

    # the supervisor stopped under the watch: exit 1, why in one line
    out = tmp_path / "stopped.out"
    proc = _watch(p, out, "--mode", "lines", "--every", "0.3")
    _wait_text(out, "items")
    p.cli("stop", check=True)
    assert proc.wait(timeout=30) == 1
    assert _err(out).strip() == "f5guard: run voice stopped: supervisor stopped"


def test_with_no_daemon_it_says_so_and_exits_1(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project("[[runs]]\nname = 'voice'\n[[runs.stages]]\nname = 'x'\ncommand = ['true']\n")
    proc = p.cli("watch", timeout=30)
    assert proc.returncode == 1 and proc.stdout == ""
    assert (
        proc.stderr.strip()
        == f"f5guard: no f5guard supervisor runs for {p.config}: nothing to watch (start it: f5guard start)"
    )


@pytest.mark.parametrize(
    ("env", "isatty", "columns", "mode"),
    [
        ({"COLAB_RELEASE_TAG": "release-colab_20260101"}, True, 0, "cr"),  # Colab's `!`: a pty of no size
        ({"COLAB_RELEASE_TAG": "release-colab_20260101"}, True, 80, "cr"),  # Colab's terminal
        ({"JPY_PARENT_PID": "1234"}, True, 80, "cr"),  # Jupyter's `!` (pexpect: a pty of 80 columns)
        ({}, True, 0, "cr"),  # a pty nobody gave a size
        ({}, True, 120, "live"),  # a terminal
        ({}, False, 0, "lines"),  # a pipe, a file
    ],
)
def test_the_drawing_is_picked_for_where_the_output_goes(env: dict[str, str], isatty: bool, columns: int,
                                                          mode: str) -> None:  # fmt: skip
    assert pick_mode(env, isatty, columns) == mode


def test_the_checkpoint_line_tells_the_cloud_from_the_drive_cache() -> None:
    """On Drive, the watch's checkpoint line says what reached the cloud and what still uploads (the durability
    note of status), not just "on home"; a report without the note keeps the plain line."""
    from f5guard.status.watchview import _cloud

    now = time.time()
    note = {
        "kind": "drive", "how": "DriveFS answers", "host": "vm-a", "confirmed_update": 3000,
        "confirmed_at": now - 600, "confirmed_estimated": False, "uploading_update": 4000,
        "uploading_since": now - 720, "uploading_bytes": 5_400_000_000, "rate_bytes_per_s": 2.1e6,
        "rate_measured": True, "held_back": None, "lost": None,
    }  # fmt: skip
    line = _cloud(note)
    assert line is not None
    assert "newest in the cloud: u3000 (confirmed" in line
    assert "on Drive, uploading: u4000 (12 min so far, ~2.1 MB/s" in line
    assert _cloud({**note, "kind": "local"}) is None
    assert _cloud({"something": "else"}) is None


def test_a_precision_changed_by_the_nan_guard_is_the_watchs_warning() -> None:
    """fp16 went NaN and f5guard continues in fp32: slower, and the user should know why (status says it too)."""
    from f5guard.status.watchview import warnings

    change = {"precision": "no", "from_precision": "fp16", "update": 7, "lr": 8.3e-05,
              "reason": "a non-finite loss at update 7", "at": 0.0, "config_precision": "auto"}  # fmt: skip
    training = {"precision_override": change, "sync_error": None, "sync_warning": "slow upload", "quarantined": [],
                "export": None, "sample": None}  # fmt: skip
    report = {"daemon": {}, "claims": [], "state": {"problems": []}}
    found = warnings(report, {"training": training})  # type: ignore[arg-type]
    assert found == ["precision fp16 -> fp32 after a non-finite loss at update 7 (learning rate 8.3e-05)",
                     "sync warning: slow upload"]  # fmt: skip
