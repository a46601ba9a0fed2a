"""Messages that say what to do: what `--pretrained none` implies, which stages reach the network, and what to
do when a download fails offline (the released F5-TTS model, a Whisper model given by name)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def f5guard(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "f5guard", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_init_says_what_pretrained_none_implies(tmp_path: Path) -> None:
    """`--pretrained none` switches the model to small, trained from scratch: init says so and what to give instead."""
    audio = tmp_path / "Thuận"
    audio.mkdir()
    (audio / "x.m4a").write_bytes(b"x")
    proc = f5guard(tmp_path, "init", "--home", str(tmp_path / "home"), "--audio", str(audio), "--pretrained", "none",
                   "-o", str(tmp_path / "c.toml"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    note = next(line for line in proc.stdout.splitlines() if line.startswith("note: --pretrained none"))
    assert "from scratch" in note and "small" in note and "--pretrained F5TTS_v1_Base" in note
    fine_tune = f5guard(tmp_path, "init", "--home", str(tmp_path / "home"), "--audio", str(audio),
                        "-o", str(tmp_path / "d.toml"))  # fmt: skip
    assert fine_tune.returncode == 0 and "from scratch" not in fine_tune.stdout
