"""Which recipe stages would reach the network, read from their argv: what ``f5guard start --dry-run`` marks.

Torch-free and quick (a few stats and package-metadata reads): the CLI imports it. Only what a stage would
fetch *now* counts: a released model already complete on home, a Whisper model in this VM's cache, or a stack
already installed at its pins needs nothing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from f5guard.recipe.asr import whisper_cache
from f5guard.recipe.pretrained import downloaded
from f5guard.schema import StageConfig

_DEMUCS_FILES = (".th", ".safetensors", ".yaml")


def _flag(argv: Sequence[str], flag: str) -> str | None:
    """The value after the last ``flag`` in argv, or None."""
    values = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]
    return values[-1] if values else None


def network_need(stage: StageConfig) -> str | None:
    """What the stage would download or install if it ran now (one phrase), or None."""
    argv = list(stage.command)
    if stage.kind == "pretrained":
        out = _flag(argv, "--out")
        if out is not None and downloaded(Path(out)):
            return None
        return f"downloads {_flag(argv, '--name')} from Hugging Face, once onto home"
    if stage.kind == "transcribe":
        return _whisper(argv)
    if stage.kind == "separate":
        model = _flag(argv, "--model")
        if model is None or "/" in model or model.endswith(_DEMUCS_FILES) or os.path.exists(model):
            return None
        return f"downloads demucs model {model!r} on every new VM (a local .th/.safetensors/.yaml avoids it)"
    if stage.kind == "setup":
        return _setup(argv)
    return None


def _whisper(argv: Sequence[str]) -> str | None:
    model = _flag(argv, "--model")
    if model is None or os.path.exists(model):
        return None
    backend = _flag(argv, "--backend") or "auto"
    if backend == "auto":
        backend = "faster" if importlib.util.find_spec("faster_whisper") is not None else "openai"
    if backend == "openai" and os.path.isfile(os.path.join(whisper_cache(), f"{model}.pt")):
        return None
    return f"downloads Whisper model {model!r} on every new VM (a local checkpoint path as model avoids it)"


def _setup(argv: Sequence[str]) -> str | None:
    """The pinned distributions this interpreter lacks (or has at another version), when setup may install."""
    from f5guard.recipe.pins import canonical
    from f5guard.recipe.setup import Found, parse_needs, parse_pins

    if "--no-install" in argv:
        return None
    if argv[:1] != [sys.executable]:
        return "pip installs what is missing from the pinned stack"
    try:
        pins = parse_pins([])
        needs = parse_needs(_flag(argv, "--need"), pins)
    except ValueError:
        return None  # the stage itself says what is wrong with its arguments
    missing = []
    for need in needs:
        pinned = pins[canonical(need.dist)]
        try:
            version: str | None = importlib.metadata.version(need.dist)
        except importlib.metadata.PackageNotFoundError:
            version = None
        if Found(need.module, need.dist, pinned, version, None).state != "ok":
            missing.append(f"{need.dist}=={pinned}")
    return f"pip installs {', '.join(missing)}" if missing else None
