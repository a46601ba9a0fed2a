"""`f5guard tail`: merged daemon events and stage output, filters, JSON, and -f across rotation."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from f5guard.cli.follow import Follower, last_lines
from tests.conftest import Project

BODY = """
[logs]
max_bytes = 4096
backups = 3
[[runs]]
name = "speaker A"
[[runs.stages]]
name = "talk"
command = ["sh", "-c", "for i in $(seq 1 5); do echo talk $i; done"]
[[runs.stages]]
name = "chatty"
long_running = true
command = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo chatty line $i padding-padding-padding-padding; sleep 0.01; done"]
"""


def test_tail_shows_events_and_output(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(BODY)
    p.cli("start", check=True)
    p.wait_for(lambda: p.stage_state("speaker A", "chatty") == "running", what="chatty running")
    out = p.cli("tail", "-n", "200", check=True).stdout
    assert "daemon ready" in out and "speaker A/talk | talk 5" in out

    only = p.cli("tail", "--run", "speaker A", "--stage", "talk", "-n", "50", check=True).stdout
    assert "talk 3" in only and "chatty line" not in only

    js = p.cli("tail", "--json", "-n", "30", check=True).stdout.splitlines()
    parsed = [json.loads(line) for line in js]
    assert parsed and all(e["source"] in ("daemon", "stage") for e in parsed)
    assert all("timestamp" in e for e in parsed)

    bad = p.cli("tail", "--stage", "nope")
    assert bad.returncode == 2 and "no stage named 'nope'" in bad.stderr


def test_tail_follow_survives_rotation(make_project) -> None:  # type: ignore[no-untyped-def]
    """The chatty stage rotates its 4 KB log many times while `tail -f` keeps printing consecutive lines."""
    p: Project = make_project(BODY)
    p.cli("start", check=True)
    p.wait_for(lambda: p.stage_state("speaker A", "chatty") == "running", what="chatty running")
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "f5guard",
            "tail",
            "-f",
            "-n",
            "0",
            "--run",
            "speaker A",
            "--stage",
            "chatty",
            "--config",
            str(p.config),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=p.env,
    )
    time.sleep(4)
    follower.terminate()
    out, _ = follower.communicate(timeout=10)
    numbers = [int(line.split("chatty line ")[1].split()[0]) for line in out.splitlines() if "chatty line" in line]
    log = p.work / "logs" / "speaker A" / "chatty.log"
    assert Path(f"{log}.1").exists(), "the stage log rotated"
    assert len(numbers) > 50
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "no line lost or repeated across rotation"


def test_follower_unit(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("a\nb\n")
    follower = Follower(log, from_end=True)
    with log.open("a") as f:
        f.write("c\npart")
    assert follower.poll() == ["c"]
    with log.open("a") as f:
        f.write("ial\n")
    log.rename(tmp_path / "x.log.1")
    log.write_text("d\n")
    assert follower.poll() == ["partial", "d"]
    log.write_text("")  # truncated in place
    assert follower.poll() == []
    log.write_text("e\n")
    assert follower.poll() == ["e"]
    follower.close()
    assert last_lines(log, 3) == ["c", "partial", "e"]
