"""The config-facing options of each recipe entry, declared once: the stage table (``recipe.kinds``) turns a
TOML table into argv with them, and each entry builds its argparse parser from the same list, so a default can
never differ between the two. Light (stdlib and ``recipe.pins``): the daemon imports it through ``recipe.kinds``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from f5guard.recipe.pins import DEFAULT_NEED
from f5guard.schema import show_number


@dataclass(frozen=True)
class Flag:
    """One option of a recipe entry: TOML key, argv flag, type and default (None: omitted unless set)."""

    key: str
    flag: str
    kind: type
    default: object = None
    help: str = ""
    choices: tuple[str, ...] | None = None
    # The entry insists on it (argv alone must say which model, which language); the stage table always
    # writes it, from the config or the default above.
    required: bool = False
    # A number's range, checked when the config is read: (low, high), None for no bound on that side; a bound
    # in ``exclusive`` is itself out of range. ``why`` ends the message: what the range protects.
    low: float | None = None
    high: float | None = None
    exclusive: tuple[str, ...] = ()  # "low", "high"
    why: str = ""

    def out_of_range(self, value: float) -> str | None:
        """Why ``value`` cannot be this option's (a phrase for the message), or None."""
        low_ok = self.low is None or (value > self.low if "low" in self.exclusive else value >= self.low)
        high_ok = self.high is None or (value < self.high if "high" in self.exclusive else value <= self.high)
        if low_ok and high_ok:
            return None
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if 'low' in self.exclusive else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if 'high' in self.exclusive else '<='} {self.high:g}")
        why = f" ({self.why})" if self.why else ""
        return f"must be {' and '.join(parts)}{why}, got {show_number(value)}"


def add_flags(parser: argparse.ArgumentParser, flags: list[Flag]) -> None:
    """Declare ``flags`` on an entry's parser, with the defaults the stage table writes."""
    for f in flags:
        if f.default is None:
            shown = ""
        elif f.required:
            shown = f" (the stage table's default: {f.default})"
        else:
            shown = f" (default {f.default})"
        if f.kind is bool:
            parser.add_argument(f.flag, action=argparse.BooleanOptionalAction, default=f.default, help=f.help + shown)
        else:
            kind = str if f.kind is list else f.kind  # a TOML list travels as one comma-separated argument
            parser.add_argument(
                f.flag,
                type=kind,
                default=None if f.required else f.default,
                required=f.required,
                choices=f.choices,
                help=f.help + shown,
            )


MIN_CLIP_S, MAX_CLIP_S = 0.3, 30.0  # F5-TTS's training sampler drops clips outside this range

DEVICE = Flag("device", "--device", str, "auto", "where the model runs", ("auto", "cpu", "cuda"))

SETUP = [
    Flag(
        "need",
        "--need",
        list,
        help=f"comma-separated modules (default {','.join(DEFAULT_NEED)}); "
        "MODULE=DIST when the distribution is named otherwise",
    ),
    Flag(
        "install",
        "--install",
        bool,
        True,
        "install what is missing or broken with pip, matched to the torch that is there (else pinned); "
        "--no-install only checks",
    ),
]

PRETRAINED_NAME = Flag("model_name", "--name", str, "F5TTS_v1_Base", "a released F5-TTS model", required=True)

SEPARATE_MODEL = Flag(
    "model",
    "--model",
    str,
    "htdemucs",
    "a demucs model name (downloaded once per VM) or a local .th/.safetensors/.yaml file or a folder holding one",
)
SEPARATE = [DEVICE]

SEGMENT = [
    # min_speech_s and min_silence_s are also at most max_clip_s (recipe.kinds checks the pair).
    Flag("min_speech_s", "--min-speech-s", float, 2.0, "shortest speech region kept", low=0),
    Flag("min_silence_s", "--min-silence-s", float, 0.5, "silence that ends a region", low=0),
    Flag("max_clip_s", "--max-clip-s", float, MAX_CLIP_S, "longest clip; F5-TTS's maximum", low=2 * MIN_CLIP_S,
         high=MAX_CLIP_S, why="F5-TTS trains on clips of 0.3-30 s and drops the rest"),
    # ... and at most half of max_clip_s: a long region is cut into pieces of at least min_clip_s each.
    Flag("min_clip_s", "--min-clip-s", float, MIN_CLIP_S, "shortest clip; F5-TTS's minimum", low=MIN_CLIP_S,
         high=MAX_CLIP_S / 2, why="F5-TTS trains on clips of 0.3-30 s and drops the rest"),
    Flag("sample_rate", "--sample-rate", int, 24000, "clip sample rate", low=8000, high=192000,
         why="in Hz"),
    Flag("threshold", "--threshold", float, 0.5, "Silero speech probability", low=0, high=1, exclusive=("low", "high"),
         why="a probability"),
    DEVICE,
]  # fmt: skip

TRANSCRIBE = [
    Flag("model", "--model", str, "large-v3", "Whisper model name or checkpoint path", required=True),
    Flag("language", "--language", str, "vi", "language code, e.g. vi", required=True),
    Flag(
        "backend",
        "--backend",
        str,
        "auto",
        "auto: faster-whisper if installed, else openai-whisper",
        ("auto", "openai", "faster"),
    ),
    DEVICE,
    Flag("min_chars", "--min-chars", int, 2, "drop transcripts with fewer letters", low=0, high=10000),
    Flag("no_speech_threshold", "--no-speech-threshold", float, 0.6, "Whisper's", low=0, high=1,
         why="a probability"),
    Flag("logprob_threshold", "--logprob-threshold", float, -1.0, "Whisper's", high=0,
         why="an average log-probability"),
]  # fmt: skip


def default(flags: list[Flag], key: str) -> object:
    """The default of ``key`` among ``flags`` (for the config ``f5guard init`` writes out)."""
    return next(f.default for f in flags if f.key == key)
