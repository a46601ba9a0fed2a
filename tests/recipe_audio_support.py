"""Helpers for the recipe stage tests: a tiny spoken Vietnamese corpus, stage subprocesses, a tiny Whisper.

The corpus is real speech from espeak-ng's Vietnamese voice, laid out like a user's upload (folders and names
with spaces, parentheses and Vietnamese letters, an mp3, a flac, a corrupt file), and every recording knows
where its speech is, so tests can check that clip boundaries fall in the silences.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.f5_fixtures import train_env

RATE = 22050  # espeak-ng's output rate; the stages resample like they do for user audio

SENTENCES = (
    "Xin chào các bạn, hôm nay chúng ta cùng nhau học tiếng Việt.",
    "Trời hôm nay đẹp quá, chúng ta đi dạo công viên nhé.",
    "Tôi rất thích ăn phở bò vào mỗi buổi sáng.",
    "Cảm ơn bạn rất nhiều vì đã giúp đỡ tôi hôm qua.",
    "Thành phố Hồ Chí Minh là thành phố lớn nhất Việt Nam.",
    "Mùa thu ở Hà Nội có gió nhẹ và hoa sữa thơm ngát.",
    "Em gái tôi đang học đàn dương cầm ở trường nhạc.",
    "Chúng ta hẹn gặp lại nhau vào ngày mai lúc tám giờ.",
    "Quyển sách này kể về lịch sử của đất nước Việt Nam.",
    "Buổi tối gia đình tôi thường ngồi ăn cơm cùng nhau.",
)

STAGE_TIMEOUT_S = 240


def need_tools() -> None:
    """Skip unless the real tools are here: espeak-ng, ffmpeg, torch, silero-vad, soundfile."""
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    for module in ("torch", "torchaudio", "soundfile", "silero_vad", "numpy"):
        # find_spec, not import: torch and friends load in the stage subprocesses, never in pytest's
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


def speak(text: str, speed: int = 150) -> Any:
    """espeak-ng Vietnamese speech as float32 at RATE, trimmed to its audible part."""
    import numpy as np
    import soundfile as sf

    raw = subprocess.run(
        ["espeak-ng", "-v", "vi", "-s", str(speed), "--stdout", text], check=True, capture_output=True
    ).stdout
    data, rate = sf.read(io.BytesIO(raw), dtype="float32")
    assert rate == RATE, rate
    loud = np.flatnonzero(np.abs(data) > 0.01)
    return data[loud[0] : loud[-1] + 1]


@dataclass(frozen=True)
class Recording:
    """A generated source file and where its speech is (seconds)."""

    path: Path
    speech: tuple[tuple[float, float], ...]

    @property
    def duration(self) -> float:
        import soundfile as sf

        return float(sf.info(str(self.path)).duration)


def make_recording(path: Path, sentences: list[str] | tuple[str, ...], gap_s: float = 1.0,
                   edge_s: float = 0.8, speed: int = 150) -> Recording:  # fmt: skip
    """Sentences separated by ``gap_s`` of silence, written as wav/flac (soundfile) or mp3/m4a (ffmpeg)."""
    import numpy as np
    import soundfile as sf

    parts = [np.zeros(int(edge_s * RATE), dtype="float32")]
    speech = []
    t = edge_s
    for i, sentence in enumerate(sentences):
        if i:
            parts.append(np.zeros(int(gap_s * RATE), dtype="float32"))
            t += int(gap_s * RATE) / RATE
        voice = speak(sentence, speed)
        parts.append(voice)
        speech.append((round(t, 4), round(t + len(voice) / RATE, 4)))
        t += len(voice) / RATE
    parts.append(np.zeros(int(edge_s * RATE), dtype="float32"))
    audio = np.concatenate(parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".wav", ".flac"):
        sf.write(str(path), audio, RATE, subtype="PCM_16")
    else:
        tmp = path.with_name(path.name + ".src.wav")
        sf.write(str(tmp), audio, RATE, subtype="PCM_16")
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(tmp), str(path)], check=True)
        tmp.unlink()
    return Recording(path, tuple(speech))


def write_corrupt(path: Path, size: int = 6000) -> Path:
    """Random bytes with an audio name: what a failed upload looks like."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(7).integers(0, 256, size, dtype="uint8").tobytes())
    return path


def make_corpus(audio_dir: Path) -> dict[str, Recording]:
    """Three recordings (wav, mp3, FLAC; 10-20 s) and a corrupt mp3, keyed by name relative to ``audio_dir``."""
    s = SENTENCES
    layout = {
        "Podcast_Thuận (3)/bài 1.wav": s[0:3],
        "Podcast_Thuận (3)/bài 2 (trực tiếp).mp3": s[3:7],
        "Giọng đọc/chương một.FLAC": s[7:10],
    }
    corpus = {name: make_recording(audio_dir / name, list(texts)) for name, texts in layout.items()}
    write_corrupt(audio_dir / "hỏng.mp3")
    return corpus


def stage_env(**extra: str) -> dict[str, str]:
    """Offline, unbuffered, f5guard importable; no progress file unless the test sets one."""
    env = train_env(**extra)
    # One intra-op thread: the test machine's cores are shared, and torch's spinning OpenMP workers then slow a
    # tiny model down by 2x or more (measured: 48 tiny-Whisper clips in 12.9 s with 1 thread, 25.5 s with 2).
    env.setdefault("OMP_NUM_THREADS", "1")
    if "F5GUARD_PROGRESS" not in extra:
        env.pop("F5GUARD_PROGRESS", None)
    return env


def run_stage(stage: str, *args: str | Path, env: dict[str, str] | None = None,
              timeout: float = STAGE_TIMEOUT_S) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``python -m f5guard.recipe.<stage> ARGS`` as a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", f"f5guard.recipe.{stage}", *map(str, args)],
        env=env or stage_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def ledger_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


# A randomly initialised Whisper, tiny but shaped like the real ones where load_model and transcribe care:
# 80 mels and a 1500-frame audio context (30 s windows). n_text_ctx 16 caps a decode at 8 tokens, so a random
# model (which never says end-of-text) finishes a clip in a fraction of a second. Whisper leaves its decoder's
# positional embedding uninitialised (torch.empty: NaNs), and a default-initialised token embedding makes the
# logits so peaked that every decode repeats one token: both get small normal weights here.
_TINY_WHISPER = textwrap.dedent(
    """
    import sys
    from dataclasses import asdict
    import torch
    from whisper.model import ModelDimensions, Whisper
    torch.manual_seed(1234)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=1, n_audio_layer=1,
                           n_vocab=51865, n_text_ctx=16, n_text_state=64, n_text_head=1, n_text_layer=1)
    model = Whisper(dims)
    torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
    torch.nn.init.normal_(model.decoder.token_embedding.weight, std=0.02)
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, sys.argv[1])
    """
)


def build_tiny_whisper(path: Path) -> Path:
    """Save a tiny random Whisper checkpoint that ``whisper.load_model(path)`` accepts (in a subprocess)."""
    if importlib.util.find_spec("whisper") is None:
        pytest.skip("openai-whisper is not installed")
    proc = subprocess.run(
        [sys.executable, "-c", _TINY_WHISPER, str(path)], env=stage_env(), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return path


def write_clips_manifest(path: Path, clips: list[Path]) -> Path:
    """A clips.json as segment writes it, for clips made directly."""
    import soundfile as sf

    entries = []
    for clip in clips:
        duration = float(sf.info(str(clip)).duration)
        entries.append({"path": str(clip), "duration_s": duration, "source": str(clip), "start_s": 0.0,
                        "end_s": duration})  # fmt: skip
    path.write_text(json.dumps({"format": 1, "clips": entries, "skipped": []}, ensure_ascii=False))
    return path


def make_clips(clip_dir: Path, n: int) -> list[Path]:
    """n single-sentence PCM16 clips with Vietnamese names (espeak's 22.05 kHz: the stage resamples anyway)."""
    import numpy as np
    import soundfile as sf

    clip_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        voice = speak(SENTENCES[i % len(SENTENCES)], speed=170)
        pad = np.zeros(int(0.1 * RATE), dtype="float32")
        path = clip_dir / f"bài đọc ({i}).x{i:07d}__{i + 1:04d}.wav"
        sf.write(str(path), np.concatenate([pad, voice, pad]), RATE, subtype="PCM_16")
        out.append(path)
    return out
