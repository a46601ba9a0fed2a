"""Hear the voice while it trains: audio samples from durable checkpoints (sample_every) and `f5guard speak`,
through F5-TTS's own inference on the tiny model with a tiny random vocos vocoder (offline)."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from array import array
from pathlib import Path

import pytest

from f5guard.checkpoints.durable import DurableCheckpoint, durable_name
from f5guard.config import load_config
from f5guard.errors import ConfigError
from f5guard.status.render import _sample_lines
from f5guard.trainer.sample import SampleFailed, pick_reference
from f5guard.training.kind import TrainOptions
from f5guard.training.sampler import SampleJob, Sampler, newest_sample, sample_name
from tests.conftest import Project, write_config
from tests.f5_fixtures import train_env
from tests.test_training_supervised import body


def _durable(update: int) -> DurableCheckpoint:
    path = Path("/nowhere") / durable_name(1, update)
    return DurableCheckpoint(path, path.with_suffix(".json"), update, 1, 10, "0" * 64, 0.0, "model_last.pt")


def _job(tmp_path: Path) -> SampleJob:
    return SampleJob("tiny", tmp_path / "vocab.txt", tmp_path, "Xin chào.", "")


def _fake_dataset(root: Path) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    for name in ("raw.arrow", "duration.json", "vocab.txt"):
        (data / name).write_text("")
    return data


@pytest.fixture(scope="session")
def tiny_vocoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random vocos with the real layout: load_vocoder(is_local=True) reads it, nothing is downloaded."""
    pytest.importorskip("vocos")
    out = tmp_path_factory.mktemp("vocos")
    argv = [sys.executable, "-m", "f5guard.trainer.tinyvocoder", str(out)]
    proc = subprocess.run(argv, env=train_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_when_a_sample_is_due(tmp_path: Path) -> None:
    (tmp_path / sample_name(8)).write_bytes(b"RIFF")
    (tmp_path / "u8.json").write_text(json.dumps({"seconds": 12.5}))
    (tmp_path / f".{sample_name(16)}.77.ab.tmp").write_bytes(b"half")
    sampler = Sampler(tmp_path, 8, _job(tmp_path), tmp_path / "sample.log", log=lambda *_a, **_k: None)
    assert sampler.last == newest_sample(tmp_path) and sampler.last is not None
    assert sampler.last.update == 8 and sampler.last.seconds == 12.5
    assert not list(tmp_path.glob(".*.tmp")), "a temp of a killed sample is removed"
    assert not sampler.due(None) and not sampler.due(_durable(15)) and sampler.due(_durable(16))
    assert sampler.due(_durable(4), final=False) is False and sampler.due(_durable(12), final=True)
    assert not sampler.due(_durable(8), final=True), "the final checkpoint is already heard"
    off = Sampler(tmp_path / "off", 0, _job(tmp_path), tmp_path / "sample.log", log=lambda *_a, **_k: None)
    assert not off.due(_durable(1000), final=True)


def test_the_reference_clip_is_picked_deterministically(tmp_path: Path) -> None:
    clips = {name: tmp_path / f"{name}.wav" for name in ("short", "long", "six", "seven")}
    for path in clips.values():
        path.write_bytes(b"RIFF")
    rows = [(str(clips["short"]), "a", 1.5), (str(clips["long"]), "b", 14.0), (str(clips["seven"]), "c", 7.0),
            (str(clips["six"]), "d", 5.5), (str(tmp_path / "gone.wav"), "e", 6.0), (str(clips["six"]), "", 6.0)]  # fmt: skip
    picked = pick_reference(rows)
    assert (picked.audio, picked.text) == (clips["six"], "d"), "3-10 s, nearest 6 s, existing, transcribed"
    assert pick_reference(list(reversed(rows))) == picked
    assert pick_reference(rows[:2]).audio == clips["short"], "none in 3-10 s: the nearest 6 s"
    with pytest.raises(SampleFailed, match="no clip with a transcript"):
        pick_reference(rows[4:])


def test_home_unreachable_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    blocker = tmp_path / "samples"
    blocker.write_text("a file where the samples folder should be")
    events: list[str] = []
    sampler = Sampler(blocker, 8, _job(tmp_path), tmp_path / "s.log", log=lambda event, **_k: events.append(event))
    sampler.poll(_durable(8))
    assert sampler.error is not None and "sample.error" in events
    assert sampler.public()["error"] == sampler.error and sampler.public()["update"] is None
    lines = _sample_lines(sampler.public())
    assert len(lines) == 1 and lines[0].plain.startswith("audio sample failed: ")
    assert [(lines[0].plain[s.start : s.end], s.style) for s in lines[0].spans] == [("audio sample failed:", "yellow")]
    sampler.poll(_durable(8), busy=True)
    assert events.count("sample.error") == 1, "nothing starts while an export runs"


@pytest.mark.train
def test_a_failed_sample_is_a_warning_once(tmp_path: Path, tiny_dataset: Path) -> None:
    """Through the real subprocess: the label in the one-line error, no retry of the same update."""
    source = tmp_path / durable_name(1, 8)
    source.write_bytes(b"not a checkpoint")
    durable = DurableCheckpoint(source, source.with_suffix(".json"), 8, 1, 16, "0" * 64, 0.0, "model_last.pt")
    events: list[str] = []
    job = SampleJob("tiny", tiny_dataset / "vocab.txt", tiny_dataset, "Xin chào.", "")
    sampler = Sampler(tmp_path / "samples", 8, job, tmp_path / "s.log", log=lambda e, **_k: events.append(e))
    sampler.poll(durable)
    assert sampler.public()["running"] == 8
    assert [line.plain for line in _sample_lines(sampler.public())] == ["speaking a sample with update 8…"]
    assert sampler.wait(300)
    assert sampler.error is not None and sampler.error.startswith(
        f"update 8: f5guard.trainer.sample: could not read {source.name}"
    ), sampler.error
    sampler.poll(durable)
    assert events == ["sample.start", "sample.failed"], "the same update is not tried again"
    assert sampler.due(_durable(16)) and not list((tmp_path / "samples").iterdir())


def test_config_keys(tmp_path: Path) -> None:
    data = _fake_dataset(tmp_path)
    voc = tmp_path / "voc"
    voc.mkdir()

    def load(extra: str, mode: str = "") -> TrainOptions:
        config = tmp_path / "f5guard.toml"
        stage = f'dataset = "{data}"\n' if not mode else 'mode = "command"\ncommand = ["true"]\ncheckpoint_dir = "c"\n'
        write_config(config, tmp_path / "home", tmp_path / "work",
                     f'[[runs]]\nname = "voice"\n[[runs.stages]]\nname = "train"\ntype = "train"\n{stage}{extra}\n')  # fmt: skip
        options = load_config(config).runs[0].stages[0].options
        assert isinstance(options, TrainOptions)
        return options

    default = load("")
    assert default.sample_every == 0 and default.vocoder == "" and default.sample_text.startswith("This is my voice")
    on = load(f'sample_every = 500\nsample_text = "Xin chào."\nvocoder = "{voc}"')
    assert (on.sample_every, on.sample_text, on.vocoder) == (500, "Xin chào.", str(voc))
    assert on.sample_dir == str(tmp_path / "home" / "runs" / "voice" / "samples")
    for extra, mode, words in [
        ("sample_every = -1", "", "sample_every: must be 0 (off) or a number of updates"),
        ('sample_text = "  "', "", "sample_text: must be a sentence to speak"),
        (f'vocoder = "{tmp_path}/nowhere"', "", "vocoder: the local vocos vocoder"),
        ("sample_every = 10", "command", "sample_every: is only for mode = 'builtin'"),
    ]:
        with pytest.raises(ConfigError) as err:
            load(extra, mode)
        assert words in err.value.message and "\n" not in err.value.message


def test_speak_bad_input_is_one_line(make_project) -> None:  # type: ignore[no-untyped-def]
    """Checked before any synthesis: no torch, no wait."""
    p: Project = make_project("")
    data = _fake_dataset(p.root)
    p.config.write_text(p.config.read_text() + f'[[runs]]\nname = "voice"\n[[runs.stages]]\nname = "train"\n'
                        f'type = "train"\ndataset = "{data}"\n')  # fmt: skip
    cases = [
        (("speak", "nobody", "Xin chào."), "no run named 'nobody'"),
        (("speak", "voice", "   "), "the text to speak is empty"),
        (("speak", "voice", "Xin chào.", "--ref", str(p.root / "missing.wav")), "missing.wav: no such file"),
        (("speak", "voice", "Xin chào."), "has no checkpoint on home yet"),
    ]
    for args, words in cases:
        proc = p.cli(*args)
        assert proc.returncode != 0, args
        assert proc.stderr.count("\n") == 1 and words in proc.stderr, (args, proc.stderr)


def _decode(path: Path) -> tuple[int, array[int]]:
    with wave.open(str(path), "rb") as handle:
        assert handle.getsampwidth() == 2 and handle.getnchannels() == 1
        frames = array("h", handle.readframes(handle.getnframes()))
        return handle.getframerate(), frames


@pytest.mark.train
@pytest.mark.slow
@pytest.mark.timeout(1200)  # two trainings' worth of torch processes: minutes on a loaded 2-core machine
def test_samples_while_training_then_speak(make_project, tiny_dataset: Path, tiny_vocoder: Path) -> None:  # type: ignore[no-untyped-def]
    extra = f'sample_every = 8\nsample_text = "Xin chào, đây là giọng nói của tôi."\nvocoder = "{tiny_vocoder}"'
    p: Project = make_project(body(tiny_dataset, epochs=8, throttle=0.4, extra=extra))
    p.cli("start", check=True)
    run = p.wait_run("voice", timeout=600)
    assert run["state"] == "done", run
    samples = p.home / "runs" / "voice" / "samples"
    wavs = sorted(samples.glob("u*.wav"), key=lambda f: int(f.stem[1:]))
    assert len(wavs) >= 2, f"{[f.name for f in wavs]}; {(p.work / 'runs/voice/train/sample.log').read_text()[-2000:]}"
    assert wavs[-1].name == "u32.wav", "the end of training is heard too"
    for wav in wavs:
        rate, frames = _decode(wav)
        assert rate == 24000 and len(frames) > 0 and max(abs(x) for x in frames) > 0
        note = json.loads(wav.with_suffix(".json").read_text())
        assert note["update"] == int(wav.stem[1:]) and note["text"] == "Xin chào, đây là giọng nói của tôi."
        assert Path(note["ref_audio"]).is_file() and note["ref_text"] and note["seconds"] > 0
    sample = run["training"]["sample"]
    assert sample["update"] == 32 and sample["path"] == str(wavs[-1]) and sample["error"] is None
    assert "newest audio sample: update 32" in p.cli("status").stdout

    out = p.root / "hello.wav"
    spoken = p.cli("speak", "voice", "Xin chào các bạn.", "--out", str(out), timeout=300)
    assert spoken.returncode == 0, spoken.stderr
    assert spoken.stdout.startswith(f"wrote {out} (update 32") and spoken.stdout.count("\n") == 1
    rate, frames = _decode(out)
    assert rate == 24000 and len(frames) > 2400 and max(abs(x) for x in frames) > 100, "non-silent audio"
    clip = json.loads(out.with_suffix(".json").read_text())["ref_audio"]
    default = p.cli("speak", "voice", "Một hai ba.", "--ref", clip, timeout=300)  # its transcript: the dataset's
    assert default.returncode == 0, default.stderr
    written = Path(default.stdout.split()[1])
    assert written.parent == p.home / "runs" / "voice" / "speak" and _decode(written)[0] == 24000
