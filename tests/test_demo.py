"""`f5guard demo`, the README's first command: a tiny dataset, a real detached daemon, a tiny F5-TTS training on
the CPU, one kill -9 of the trainer, the resume, and the final status. Run here exactly as a user runs it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.train, pytest.mark.slow, pytest.mark.timeout(900)]


def test_demo_trains_crashes_resumes_and_finishes(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("the demo speaks its dataset with espeak-ng (make install puts it here)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("F5GUARD_", "NOTIFY_SOCKET"))}
    demo = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "f5guard", "demo", "--dir", str(demo)],
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=840,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    crash = re.search(r"CRASH: kill -9 of the trainer \(pid \d+\) at update (\d+); home holds update (\d+)", out)
    resumed = re.search(r"RECOVERED: new trainer \(pid \d+\) [\d.]+s after the kill, resumed at update (\d+)", out)
    assert crash and resumed, out[-3000:]
    assert int(resumed[1]) == int(crash[2]), "resumed from what home held when the trainer was killed"
    finished = re.search(r"training finished at update (\d+); home holds update (\d+) \(verified\)", out)
    assert finished and finished[1] == finished[2], out[-2000:]
    assert "run demo voice · done" in out and "1 restart(s), last: killed by SIGKILL" in out
    status = subprocess.run(
        [sys.executable, "-m", "f5guard", "status", "--config", str(demo / "f5guard.toml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 1 and "no f5guard supervisor runs here" in status.stdout, "the demo stops it"
    assert f"safe on home: update {finished[1]}" in status.stdout, status.stdout
