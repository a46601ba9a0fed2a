"""`f5guard init --set STAGE.KEY=VALUE`: the written config carries the change (every run, comments kept), and a
setting that cannot work is one line naming it, with nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from f5guard.cli.init_settings import apply_settings, parse_setting
from f5guard.config import load_config
from f5guard.errors import UsageError
from f5guard.training.kind import TrainOptions


def audio_folder(root: Path) -> Path:
    for speaker in ("Anh", "Bình"):
        (root / speaker).mkdir(parents=True)
        (root / speaker / "a.wav").write_bytes(b"RIFF")  # init only lists files; nothing reads them
    return root


def init(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "f5guard", "init", "--home", str(tmp_path / "home"), "--work", str(tmp_path / "work"),
         "--audio", str(audio_folder(tmp_path / "audio")), "--pretrained", "none", *args],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip


def test_settings_reach_every_run_and_keep_the_comments(tmp_path: Path) -> None:
    proc = init(
        tmp_path,
        "--set", "train.batch_size_per_gpu=2400",
        "--set", "train.keep_durable = 2",
        "--set", "train.hang_minutes=45",  # a key init does not write: added to the stage
        "--set", "segment.min_speech_s=0.5",
        "--set", "lease.settle_s=5",  # a table init does not write
        "--set", "restart.budget=3",  # one it does
        "--set", "setup.install=false",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "home" / "f5guard.toml"
    text = path.read_text()
    config = load_config(path)
    assert [r.name for r in config.runs] == ["Anh", "Bình"]
    for run in config.runs:
        options = next(s.options for s in run.stages if s.name == "train")
        assert isinstance(options, TrainOptions)
        assert options.keep_durable == 2 and options.hang_minutes == 45
    assert text.count("batch_size_per_gpu = 2400  # set by f5guard init --set") == 2
    assert "batch_size_per_gpu = 3200" not in text
    assert config.lease.settle_s == 5
    assert all(s.restart.budget == 3 for r in config.runs for s in r.stages if s.name == "train")
    assert text.index("[lease]") < text.index("[[runs]]")
    assert "# One run per speaker" in text and "# Silero VAD" in text, "init's comments stay"


def test_values_are_toml_or_plain_strings() -> None:
    assert parse_setting("train.batch_size_per_gpu=2400").value == "2400"
    assert parse_setting("train.learning_rate=1e-5").value == "1e-5"
    assert parse_setting("setup.install=false").value == "false"
    assert parse_setting('setup.need=["torch", "f5_tts"]').value == '["torch", "f5_tts"]'
    path = parse_setting('transcribe.model=/content/drive/My "Drive"/large-v3.pt')
    assert path.value == '"/content/drive/My \\"Drive\\"/large-v3.pt"'
    assert parse_setting("train.model=tiny").value == '"tiny"'


def test_a_setting_replaces_only_its_own_stage() -> None:
    text = (
        '[[runs]]\nname = "a"\n\n[[runs.stages]]\nname = "x"\nmodel = "m"\n\n[[runs.stages]]\nname = "y"\nmodel = "m"\n'
    )
    out = apply_settings(text, [parse_setting("y.model=n")])
    assert out.count('model = "m"') == 1 and 'model = "n"  # set by f5guard init --set' in out
    assert out.index('model = "m"') < out.index('name = "y"') < out.index('model = "n"')


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("train", "expected STAGE.KEY=VALUE"),
        ("train.=3", "expected STAGE.KEY=VALUE"),
        ("pretrained.model_name=x", "no stage or table named 'pretrained'"),  # --pretrained none writes none
        ("train.batch_size_pre_gpu=2", "batch_size_pre_gpu"),
        ("train.epochs=-3", "epochs"),
    ],
)
def test_a_bad_setting_is_one_line_and_writes_nothing(tmp_path: Path, setting: str, says: str) -> None:
    proc = init(tmp_path, "--set", setting)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "f5guard.toml").exists() and not list((tmp_path / "home").glob(".*tmp"))
    assert not (tmp_path / "f5guard.toml").exists()


def test_parse_refuses_a_value_on_two_lines() -> None:
    with pytest.raises(UsageError, match="one line"):
        parse_setting("train.model=a\nb")
