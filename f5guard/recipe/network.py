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
    """What setup would pip-install now, judged from package metadata alone (no import: the CLI stays quick),
    the way setup judges it: a working torch that is not the pin stays; nothing when this machine's stamp
    already vouches for the stack."""
    from f5guard.recipe import stackstamp
    from f5guard.recipe.setup import _dists, own_overrides, parse_needs, parse_pins, stamp_key
    from f5guard.recipe.stackplan import plan
    from f5guard.recipe.stackprobe import Probe

    if "--no-install" in argv:
        return None
    if argv[:1] != [sys.executable]:
        return "pip installs what is missing from the pinned stack"
    try:
        pins = parse_pins([])
        needs = parse_needs(_flag(argv, "--need"), pins, require_gpu="--require-gpu" in argv)
    except ValueError:
        return None  # the stage itself says what is wrong with its arguments
    if stackstamp.read(stackstamp.directory(), stamp_key(needs, pins, "--require-gpu" in argv)) is not None:
        return None
    seen = Probe()
    for dist in _dists(needs):
        try:
            seen.versions[dist] = importlib.metadata.version(dist)
            seen.requires[dist] = importlib.metadata.requires(dist) or []
        except importlib.metadata.PackageNotFoundError:
            seen.versions[dist] = None
    bad = plan(needs, pins, seen, own_overrides()).bad
    return f"pip installs {', '.join(f'{i.dist}=={i.want}' for i in bad)}" if bad else None
