"""`f5guard init --audio`: one run per speaker folder, names with spaces, parentheses and Vietnamese letters,
and one clear error for a missing or empty audio folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from f5guard.config import load_config
from f5guard.training.kind import TrainOptions


def init(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "f5guard", "init", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_one_run_per_speaker(tmp_path: Path) -> None:
    audio = tmp_path / "drive" / "raw_audio"
    (audio / "Podcast_Thuận (3)").mkdir(parents=True)
    (audio / "Podcast_Thuận (3)" / "bài 1.mp3").write_bytes(b"x")
    (audio / "Bob" / "day 2").mkdir(parents=True)
    (audio / "Bob" / "day 2" / "a.WAV").write_bytes(b"x")
    (audio / "notes").mkdir()
    (audio / "notes" / "readme.txt").write_text("not audio")
    (audio / "stray.flac").write_bytes(b"x")
    home = tmp_path / "drive" / "F5TTS_Vietnamese"
    proc = init(tmp_path, "--home", str(home), "--audio", str(audio), "--work", str(tmp_path / "work"))
    assert proc.returncode == 0, proc.stderr
    assert "stray.flac is not in a speaker folder" in proc.stdout
    config = load_config(home / "f5guard.toml")
    assert [r.name for r in config.runs] == ["Bob", "Podcast_Thuận (3)"]
    assert (tmp_path / "f5guard.toml").resolve() == home / "f5guard.toml", "linked from the working folder"
    stages = config.runs[1].stages
    assert [s.name for s in stages] == ["setup", "pretrained", "ingest", "segment", "transcribe", "prepare", "train"]
    ingest = config.runs[1].stage("ingest")
    assert ingest is not None and str(audio / "Podcast_Thuận (3)") in ingest.command
    transcribe = config.runs[1].stage("transcribe")
    assert transcribe is not None and "--language" in transcribe.command and "vi" in transcribe.command
    train = config.runs[1].stage("train")
    assert train is not None and isinstance(train.options, TrainOptions) and train.options.spec is not None
    assert train.options.spec.model == "base"
    assert str(train.options.spec.pretrained).endswith("Podcast_Thuận (3)/prepare/pretrained_extended.pt")
    setup = config.runs[1].stage("setup")
    assert setup is not None and setup.scope.value == "runtime"
    dry = subprocess.run(
        [sys.executable, "-m", "f5guard", "start", "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0 and "run Podcast_Thuận (3):" in dry.stdout
    again = init(tmp_path, "--home", str(home), "--audio", str(audio))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_flat_folder_is_one_run(tmp_path: Path) -> None:
    audio = tmp_path / "Thuận"
    audio.mkdir()
    (audio / "x.m4a").write_bytes(b"x")
    proc = init(
        tmp_path,
        "--home",
        str(tmp_path / "home"),
        "--audio",
        str(audio),
        "--pretrained",
        "none",
        "-o",
        str(tmp_path / "c.toml"),
    )
    assert proc.returncode == 0, proc.stderr
    config = load_config(tmp_path / "c.toml")
    assert [r.name for r in config.runs] == ["Thuận"]
    train = config.runs[0].stage("train")
    assert train is not None and isinstance(train.options, TrainOptions) and train.options.spec is not None
    assert train.options.spec.pretrained is None
    assert [s.name for s in config.runs[0].stages][1] == "ingest", "no pretrained stage"


def test_missing_or_empty_audio_folder(tmp_path: Path) -> None:
    missing = init(tmp_path, "--home", str(tmp_path / "home"), "--audio", str(tmp_path / "drive" / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"f5guard: audio folder {tmp_path}/drive/nope does not exist (is Drive mounted?)"
    ]
    empty = tmp_path / "empty"
    (empty / "speaker").mkdir(parents=True)
    (empty / "speaker" / "notes.txt").write_text("x")
    proc = init(tmp_path, "--home", str(tmp_path / "home"), "--audio", str(empty))
    assert proc.returncode == 2 and "no audio files (aac, flac, m4a, mp3" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    (empty / "speaker" / "a.wav").write_bytes(b"x")
    bad = init(tmp_path, "--home", str(tmp_path / "home"), "--audio", str(empty), "--pretrained", "F5TTS_v9")
    assert bad.returncode == 2 and "unknown pretrained model 'F5TTS_v9'" in bad.stderr
