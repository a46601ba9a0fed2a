"""`f5guard init --audio`: one run per speaker folder, names with spaces, parentheses and Vietnamese letters,
and one clear error for a missing or empty audio folder."""

from __future__ import annotations

import os
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
    assert train.options.sample_every == train.options.spec.save_per_updates, "hear the voice at each save"
    assert train.options.sample_text.startswith("Xin chào")
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


def test_speaker_folder_not_utf8_is_skipped_with_a_note(tmp_path: Path) -> None:
    """A speaker folder whose name is not UTF-8 is skipped with a note naming its bytes escaped; the others are
    runs. Before: a UnicodeEncodeError traceback, and an empty .f5guard.toml.NNNN.tmp left in home."""
    audio = tmp_path / "audio"
    (audio / "Ana").mkdir(parents=True)
    (audio / "Ana" / "a.wav").write_bytes(b"x")
    bad = os.fsdecode(bytes(audio) + b"/bad\xffname")
    os.mkdir(bad)
    (Path(bad) / "b.wav").write_bytes(b"x")
    home = tmp_path / "home"
    proc = init(tmp_path, "--home", str(home), "--audio", str(audio), "--work", str(tmp_path / "work"))
    assert proc.returncode == 0, proc.stderr
    assert (
        f"note: skipped the speaker folder {audio}/bad\\xffname: its name is not valid UTF-8; rename it to use it"
        in (proc.stdout.splitlines())
    )
    assert [r.name for r in load_config(home / "f5guard.toml").runs] == ["Ana"]
    assert sorted(p.name for p in home.iterdir()) == ["f5guard.toml"], "no temp file left in home"
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    os.rename(bad, os.fsdecode(bytes(only_bad) + b"/bad\xffname"))
    refused = init(
        tmp_path, "--home", str(tmp_path / "home2"), "--audio", str(only_bad), "-o", str(tmp_path / "c.toml")
    )
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "can be a run: skipped the speaker folder" in refused.stderr and "bad\\xffname" in refused.stderr
    assert not (tmp_path / "home2").exists() and not (tmp_path / "c.toml").exists()


def test_braces_and_long_names_in_paths(tmp_path: Path) -> None:
    """A folder named with braces keeps them (placeholders expand in paths); a home with a 300-byte component is
    one line, exit 2 (before: an unknown-placeholder error for 'Bob {2}', an OSError traceback for the home)."""
    audio = tmp_path / "audio {1}"
    (audio / "Bob {2}").mkdir(parents=True)
    (audio / "Bob {2}" / "a.wav").write_bytes(b"x")
    proc = init(tmp_path, "--home", str(tmp_path / "home"), "--audio", str(audio), "--work", str(tmp_path / "w{3}"))
    assert proc.returncode == 0, proc.stderr
    config = load_config(tmp_path / "home" / "f5guard.toml")
    ingest = config.runs[0].stage("ingest")
    assert config.runs[0].name == "Bob {2}" and config.work == tmp_path / "w{3}"
    assert ingest is not None and str(audio / "Bob {2}") in ingest.command
    long_home = tmp_path / ("h" * 300)
    refused = init(tmp_path, "--home", str(long_home), "--audio", str(audio), "-o", str(tmp_path / "c.toml"))
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines() == [
        f"f5guard: --home: the path component '{'h' * 57}...' is 300 bytes; a file name is at most 255 bytes"
    ]
