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

# The torch range the pinned f5-tts declares (its METADATA: ``Requires-Dist: torch>=2.0.0``), for a machine where
# f5-tts is not installed yet; once it is, setup reads the installed f5-tts's own requirement instead.
F5_TTS_TORCH = ">=2.0.0"

# torch (major.minor) -> (the torchcodec setup installs beside it, the torchcodec minors that pair with it).
# Source: torchcodec's README, "Compatibility with torch versions" (pytorch/torchcodec, as published with
# torchcodec 0.17.0 on PyPI): 0.0.3 <-> 2.4, 0.1 <-> 2.5, 0.2 <-> 2.6, 0.3-0.5 <-> 2.7, 0.6-0.7 <-> 2.8,
# 0.8-0.9 <-> 2.9, 0.10 <-> 2.10, 0.11 <-> 2.11, 0.12-0.16 <-> torch >= 2.11. For 2.9 setup installs the pin
# (0.8.1: 0.9 is built against CUDA 13); above 2.11 the newest torchcodec the table vouches for. torchaudio is
# the release of torch's own version (``torchaudio X`` requires ``torch==X``); none exists beyond 2.11.
TORCHCODEC_FOR_TORCH: Mapping[str, tuple[str, tuple[str, ...]]] = MappingProxyType({
    "2.6": ("0.2.1", ("0.2",)),
    "2.7": ("0.5", ("0.3", "0.4", "0.5")),
    "2.8": ("0.7.0", ("0.6", "0.7")),
    "2.9": ("0.8.1", ("0.8", "0.9")),
    "2.10": ("0.10.0", ("0.10",)),
    "2.11": ("0.11.1", ("0.11", "0.12", "0.13", "0.14", "0.15", "0.16")),
    "2.12": ("0.16.0", ("0.12", "0.13", "0.14", "0.15", "0.16")),
    "2.13": ("0.16.0", ("0.12", "0.13", "0.14", "0.15", "0.16")),
})  # fmt: skip


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name: ``F5_TTS`` and ``f5-tts`` are the same project."""
    return re.sub(r"[-_.]+", "-", name).lower()


# The newest torchaudio release line: torchaudio is in maintenance and stopped following torch (PyPI's torchaudio
# releases end at 2.11.1 while torch's go on to 2.15). A newer torch can stay only where a torchaudio is not
# needed, or one that imports and decodes is already there.
TORCHAUDIO_NEWEST = (2, 11)


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version: ``2.9.1+cu128`` -> (2, 9, 1), ``2.10.0rc1`` -> (2, 10, 0)."""
    parts = []
    for piece in version.split("+", 1)[0].split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() != len(piece):
            break
    return tuple(parts)


def minor(version: str) -> str:
    """``2.9.1+cu128`` -> ``2.9``: the key of TORCHCODEC_FOR_TORCH (and ``0.8.1`` -> ``0.8`` for torchcodec)."""
    return ".".join(str(n) for n in release(version)[:2])


def satisfies(version: str, spec: str) -> bool | None:
    """Whether ``version`` meets ``spec`` (``>=2.0,<3``; numeric releases, the local tag ignored), or None
    when a clause is not one this reads (then the caller cannot judge, and says so)."""
    have = release(version)
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        match = re.fullmatch(r"(==|!=|>=|<=|>|<|~=)\s*([0-9][0-9.]*)(\.\*)?", clause)
        if match is None or not have:
            return None
        op, text, star = match.groups()
        want = release(text)
        if star:  # ==2.9.* : the same leading parts
            same = have[: len(want)] == want
            ok = same if op == "==" else not same if op == "!=" else None
            if ok is None:
                return None
        else:
            n = max(len(have), len(want))
            a, b = have + (0,) * (n - len(have)), want + (0,) * (n - len(want))
            ok = {
                "==": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b,
                "~=": a >= b and a[: len(want) - 1] == b[: len(want) - 1],
            }[op]  # fmt: skip
        if not ok:
            return False
    return True


def torchcodec_for(torch_version: str) -> tuple[str, tuple[str, ...]] | None:
    """(torchcodec to install, the minors that pair) for this torch, or None when the table does not know it."""
    return TORCHCODEC_FOR_TORCH.get(minor(torch_version))


def requirement(dist: str, pins: Mapping[str, str] = PINS) -> str:
    """``dist==version`` for a pinned distribution (KeyError when it has no pin; keys are canonical)."""
    return f"{dist}=={pins[canonical(dist)]}"
