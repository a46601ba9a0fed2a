"""The pinned training stack, torch-free: one place that says which versions f5guard installs and checks.

torch, torchaudio and torchcodec move together: torchaudio >= 2.9 reads audio through torchcodec, and a
torchcodec built for another torch fails to load (an unpinned one needs CUDA 13). pyproject.toml's ``train``
and ``recipe`` extras carry the same pins (a test keeps them equal).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from types import MappingProxyType

from f5guard.stages.stackpython import SEPARATE_ENV

# distribution name -> exact version
PINS: Mapping[str, str] = MappingProxyType({
    "torch": "2.9.1",
    "torchaudio": "2.9.1",
    "torchcodec": "0.8.1",
    "f5-tts": "1.1.22",
    "silero-vad": "6.2.3",
    "openai-whisper": "20250625",
    "demucs": "4.1.0",
})  # fmt: skip

TORCH_TOGETHER: tuple[str, ...] = ("torch", "torchaudio", "torchcodec")

# f5guard's own requirements that installing a pinned package would undo, re-asserted right after it: f5-tts
# needs cached-path, which caps filelock below 4, while f5guard's lease needs filelock >= 4.2.1 (the top-level
# overrides.txt says why, and is the same override for uv). pip cannot override a cap, so setup reinstalls
# the requirement after f5-tts; pip then warns about cached-path's cap and carries on.
OVERRIDES: Mapping[str, tuple[str, ...]] = MappingProxyType({"f5-tts": ("filelock>=4.2.1",)})


def overrides_here() -> Mapping[str, tuple[str, ...]]:
    """OVERRIDES where the daemon shares this interpreter's packages; none in a stack python of its own (the
    stage's environment says so, and shows f5guard only through ``work/.f5guard/pythonpath``): f5-tts keeps the
    filelock it asks for there, while the daemon's filelock lives in the daemon's environment."""
    return MappingProxyType({}) if os.environ.get(SEPARATE_ENV) else OVERRIDES


# import name -> distribution name, for the modules the recipe needs
MODULES: Mapping[str, str] = MappingProxyType({
    "torch": "torch",
    "torchaudio": "torchaudio",
    "torchcodec": "torchcodec",
    "f5_tts": "f5-tts",
    "silero_vad": "silero-vad",
    "whisper": "openai-whisper",
    "demucs": "demucs",
})  # fmt: skip

DEFAULT_NEED: tuple[str, ...] = ("torch", "torchaudio", "f5_tts", "silero_vad", "whisper", "demucs")


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name: ``F5_TTS`` and ``f5-tts`` are the same project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement(dist: str, pins: Mapping[str, str] = PINS) -> str:
    """``dist==version`` for a pinned distribution (KeyError when it has no pin; keys are canonical)."""
    return f"{dist}=={pins[canonical(dist)]}"
