"""Messages that say what to do: what `--pretrained none` implies, which stages reach the network, and what to
do when a download fails offline (the released F5-TTS model, a Whisper model given by name)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest


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


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(not _has("huggingface_hub"), reason="huggingface_hub is not installed")
def test_pretrained_offline_says_use_a_local_file_or_none(tmp_path: Path) -> None:
    """Offline, the download fails with one line that says what to do instead: a local file or --pretrained none."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run([sys.executable, "-m", "f5guard.recipe.pretrained", "--name", "F5TTS_v1_Base", "--out",
                           str(tmp_path / "pt")], capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("f5guard.recipe.pretrained: could not download F5TTS_v1_Base"), lines
    assert "needs the network" in lines[0] and "`--pretrained none`" in lines[0]
    assert "`f5guard init --pretrained /path/to/model.safetensors` with vocab.txt beside it" in lines[0]


@pytest.mark.train
@pytest.mark.skipif(not _has("whisper"), reason="openai-whisper is not installed")
def test_whisper_download_failure_names_the_download_and_the_local_path(tmp_path: Path) -> None:
    """A Whisper model given by name that cannot be downloaded: the message names the model download and the
    local-path alternative, not just "I/O error: <urlopen error ...>"."""
    clip = tmp_path / "c.wav"
    clip.write_bytes(b"RIFF")  # only hashed: the model fails to load before any clip is decoded
    clips = tmp_path / "clips.json"
    clips.write_text(json.dumps({"format": 1, "clips": [{"path": str(clip)}], "skipped": []}))
    closed = "http://127.0.0.1:9"  # nothing listens on the discard port: every download is refused at once
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), https_proxy=closed, HTTPS_PROXY=closed,
               no_proxy="", NO_PROXY="")  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "f5guard.recipe.transcribe", "--clips", str(clips), "--out",
                           str(tmp_path / "out"), "--model", "tiny", "--language", "vi", "--backend", "openai",
                           "--device", "cpu"], capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"f5guard.recipe.transcribe: could not download Whisper model 'tiny' into {tmp_path}/cache/whisper: "
    ), lines[0]
    assert "needs the network" in lines[0] and "set the transcribe stage's model to that file's path" in lines[0]


def test_dry_run_marks_the_stages_that_need_the_network(tmp_path: Path) -> None:
    """The released model and a Whisper model by name are downloads: --dry-run says so on their lines."""
    audio = tmp_path / "audio" / "A"
    audio.mkdir(parents=True)
    (audio / "x.wav").write_bytes(b"x")
    made = f5guard(tmp_path, "init", "--home", str(tmp_path / "home"), "--audio", str(tmp_path / "audio"),
                   "--work", str(tmp_path / "work"), "-o", str(tmp_path / "f5guard.toml"))  # fmt: skip
    assert made.returncode == 0, made.stderr
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "f5guard", "start", "--dry-run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = {line.split(":", 1)[0].strip(): line for line in proc.stdout.splitlines() if line.startswith("  ")}
    assert lines["pretrained"].endswith(
        "· needs the network: downloads F5TTS_v1_Base from Hugging Face, once onto home"
    ), lines
    assert lines["transcribe"].endswith(
        "· needs the network: downloads Whisper model 'large-v3' on every new VM (a local checkpoint path as model "
        "avoids it)"
    )
    for name in ("ingest", "segment", "prepare", "train"):
        assert "needs the network" not in lines[name]


def test_network_need_of_setup_and_separate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """setup needs the network only when it would install something; separate only for a model given by name."""
    import importlib.metadata

    from f5guard.recipe.network import network_need
    from f5guard.schema import StageConfig

    def stage(kind: str, *argv: str) -> StageConfig:  # only kind and command are read
        return cast(StageConfig, SimpleNamespace(kind=kind, command=(sys.executable, "-m", kind, *argv)))

    real = importlib.metadata.version

    def without_torch(dist: str) -> str:
        if dist == "torch":
            raise importlib.metadata.PackageNotFoundError(dist)
        return "0.0.0" if dist == "silero-vad" else real(dist)

    monkeypatch.setattr(importlib.metadata, "version", without_torch)
    assert network_need(stage("setup", "--need", "torch,silero_vad")) == "pip installs torch==2.9.1, silero-vad==6.2.3"
    assert network_need(stage("setup", "--need", "torch", "--no-install")) is None
    assert network_need(stage("separate", "--model", "htdemucs")) == (
        "downloads demucs model 'htdemucs' on every new VM (a local .th/.safetensors/.yaml avoids it)"
    )
    assert network_need(stage("separate", "--model", str(tmp_path / "m.th"))) is None
