"""Speech recognition for the recipe: Whisper backends behind one call, and the rules that drop bad transcripts.

``load_backend`` loads the model once (openai-whisper, or faster-whisper when installed and chosen); the backend
transcribes one clip (16 kHz mono float32) with the language fixed, greedy at temperature 0 first and Whisper's
own fallback to higher temperatures. ``judge`` decides from the result alone whether a transcript is kept:
non-speech by Whisper's rule (no_speech_prob above its threshold AND avg_logprob below its threshold), empty,
or too short (fewer letters than asked). The judging half is torch-free so it is tested with made-up segments.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from f5guard.recipe.stagecli import StageFailed, one_line

if TYPE_CHECKING:
    import numpy as np

_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})  # not the network
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # Whisper's own fallback ladder
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Segment:
    """What Whisper says about one decoded window: its text and how sure it was that anyone spoke."""

    text: str
    no_speech_prob: float
    avg_logprob: float


@dataclass(frozen=True)
class Transcript:
    """One clip's recognition; ``segments`` empty means Whisper skipped every window as silence."""

    text: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Rules:
    """When a transcript is dropped instead of becoming a training row."""

    min_chars: int = 2
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0


def clean_text(text: str) -> str:
    """One line for metadata.csv: no "|" (the column separator), no newlines, single spaces."""
    return _SPACE.sub(" ", text.replace("|", " ")).strip()


def letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


def judge(transcript: Transcript, rules: Rules) -> tuple[str | None, str]:
    """(None, "") to keep the clip, else (reason, detail) with reason in non_speech / empty / short."""
    if not transcript.segments:
        return "non_speech", "Whisper skipped every window as silence"
    silent = [
        s for s in transcript.segments
        if s.no_speech_prob > rules.no_speech_threshold and s.avg_logprob < rules.logprob_threshold
    ]  # fmt: skip
    if len(silent) == len(transcript.segments):
        worst = max(silent, key=lambda s: s.no_speech_prob)
        return "non_speech", (
            f"no_speech_prob {worst.no_speech_prob:.2f} > {rules.no_speech_threshold:g} and "
            f"avg_logprob {worst.avg_logprob:.2f} < {rules.logprob_threshold:g}"
        )
    text = clean_text(transcript.text)
    if not text:
        return "empty", "no text"
    count = letters(text)
    if count < rules.min_chars:
        return "short", f"{count} letters < --min-chars {rules.min_chars} ({text!r})"
    return None, ""


class Backend(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray) -> Transcript: ...


@dataclass(frozen=True)
class DecodeOptions:
    """What changes a transcript besides the clip: part of each ledger record's signature."""

    model: str
    language: str
    beam_size: int
    no_speech_threshold: float
    logprob_threshold: float


def resolve_backend(choice: str) -> str:
    """``auto`` prefers faster-whisper only when it is importable; openai-whisper otherwise (the notebook's)."""
    if choice != "auto":
        return choice
    return "faster" if importlib.util.find_spec("faster_whisper") is not None else "openai"


def check_model(backend: str, model: str) -> str | None:
    """Why ``model`` cannot be loaded (a one-line reason), or None; checked before any clip is touched."""
    if backend == "openai":
        import whisper  # type: ignore[import-untyped,unused-ignore]

        if os.path.isfile(model) or model in whisper.available_models():
            return None
        return f"neither a checkpoint file nor one of Whisper's names ({', '.join(whisper.available_models())})"
    if importlib.util.find_spec("faster_whisper") is None:
        return "faster-whisper is not installed (pip install faster-whisper, or --backend openai)"
    return None


def load_backend(backend: str, options: DecodeOptions, device: str) -> Backend:
    """Load the model once for the whole run; a model given by name that cannot be downloaded is StageFailed
    with what to do offline."""
    if backend not in ("openai", "faster"):
        raise ValueError(f"unknown backend {backend!r}")
    try:
        return _OpenAIWhisper(options, device) if backend == "openai" else _FasterWhisper(options, device)
    except OSError as err:  # urllib's URLError, huggingface_hub's offline errors: the download, not the disk
        if os.path.exists(options.model) or err.errno in _DISK_ERRNOS:
            raise
        where = whisper_cache() if backend == "openai" else "the Hugging Face cache"
        raise StageFailed(
            f"could not download Whisper model {options.model!r} into {where}: {type(err).__name__}: "
            f"{one_line(str(err), 200)} (a model given by name is downloaded on every new VM and needs the "
            "network; offline, copy its checkpoint to Drive from a machine online and set the transcribe "
            "stage's model to that file's path)"
        ) from err


def whisper_cache() -> str:
    """Where openai-whisper keeps the models it downloads (its own default download_root)."""
    default = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.getenv("XDG_CACHE_HOME", default), "whisper")


class _OpenAIWhisper:
    name = "openai"

    def __init__(self, options: DecodeOptions, device: str) -> None:
        import whisper  # type: ignore[import-untyped,unused-ignore]

        self.options = options
        self.device = device
        self.model = whisper.load_model(options.model, device=device)

    def transcribe(self, audio: np.ndarray) -> Transcript:
        o = self.options
        beam: dict[str, Any] = {"beam_size": o.beam_size, "best_of": o.beam_size} if o.beam_size > 1 else {}
        result = self.model.transcribe(
            audio,
            language=o.language,
            task="transcribe",
            temperature=TEMPERATURES,
            no_speech_threshold=o.no_speech_threshold,
            logprob_threshold=o.logprob_threshold,
            condition_on_previous_text=False,  # clips are independent; a prompt only carries errors over
            without_timestamps=True,  # a clip is one window (<= 30 s): no seeking inside it
            fp16=self.device == "cuda",
            verbose=None,
            **beam,
        )
        return Transcript(str(result["text"]), _segments(result["segments"]))


class _FasterWhisper:
    name = "faster"

    def __init__(self, options: DecodeOptions, device: str) -> None:
        from faster_whisper import (  # type: ignore[import-not-found,import-untyped,unused-ignore]
            WhisperModel,
        )

        self.options = options
        compute = "float16" if device == "cuda" else "int8"
        self.model = WhisperModel(options.model, device=device, compute_type=compute)

    def transcribe(self, audio: np.ndarray) -> Transcript:
        o = self.options
        pieces, _info = self.model.transcribe(
            audio,
            language=o.language,
            task="transcribe",
            beam_size=o.beam_size,
            temperature=list(TEMPERATURES),
            no_speech_threshold=o.no_speech_threshold,
            log_prob_threshold=o.logprob_threshold,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,  # the clips are already VAD-cut
        )
        segments = tuple(Segment(p.text, float(p.no_speech_prob), float(p.avg_logprob)) for p in pieces)
        return Transcript("".join(s.text for s in segments), segments)


def _segments(raw: Sequence[dict[str, Any]]) -> tuple[Segment, ...]:
    return tuple(Segment(str(s["text"]), float(s["no_speech_prob"]), float(s["avg_logprob"])) for s in raw)
