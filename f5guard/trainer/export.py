"""An inference copy of a training checkpoint: the EMA weights only, in half precision (imports torch).

A Base training checkpoint holds the model, its EMA and the optimizer: ~5 GB. Inference needs only the EMA
(F5-TTS's ``load_checkpoint(..., use_ema=True)`` reads ``ema_model_state_dict``), and half precision is what
the released models ship: ~1/4 of the size. Run as ``python -m f5guard.trainer.export SRC OUT`` by the daemon's
exporter, in its own process, because the daemon never imports torch.

Exit codes: 0 written, 1 failed (one line on stderr).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from f5guard.errors import F5guardError
from f5guard.fsutil import publishing
from f5guard.pdeathsig import follow_supervisor


class ExportFailed(F5guardError, RuntimeError):
    """The checkpoint could not be read as a training checkpoint with an EMA, or the copy not written."""


def ema_half(document: dict[str, Any]) -> dict[str, Any]:
    """The EMA state dict with floating tensors in float16; counters and buffers of other types unchanged."""
    ema = document.get("ema_model_state_dict")
    if not isinstance(ema, dict) or not ema:
        raise ExportFailed("it holds no ema_model_state_dict (not an F5-TTS training checkpoint)")
    return {key: value.half() if value.is_floating_point() else value for key, value in ema.items()}


def export(src: Path, out: Path, label: str | None = None) -> int:
    """Write ``out`` from ``src`` atomically; returns the checkpoint's update. ``label`` names ``src`` in errors
    (the daemon passes an inherited descriptor, /proc/self/fd/N)."""
    import torch

    name = label or str(src)
    try:  # mmap: a 5 GB checkpoint is paged in as it is read, not copied into RAM beside the trainer
        document = torch.load(src, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises RuntimeError, pickle errors, OSError...
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportFailed(f"could not read {name}: {why}") from err
    if not isinstance(document, dict):
        raise ExportFailed(f"could not read {name}: not a checkpoint dict")
    try:
        state = ema_half(document)
    except ExportFailed as err:
        raise ExportFailed(f"{name}: {err}") from err
    update = int(document.get("update", 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    with publishing(out) as tmp:
        torch.save({"ema_model_state_dict": state, "update": update}, tmp)
    return update


def _terminate(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds through publishing(): the temp file is removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m f5guard.trainer.export", description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="a training checkpoint (model_*.pt or a durable ckpt-*.pt)")
    parser.add_argument("out", type=Path, help="the inference copy to write (atomically)")
    parser.add_argument("--label", help="the source's name in messages")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    follow_supervisor()  # SIGTERM (temp removed) if the daemon that started us dies
    src, out = args.src, args.out
    try:
        update = export(src, out, args.label)
    except (ExportFailed, OSError) as err:
        print(f"f5guard.trainer.export: {err}", file=sys.stderr)
        return 1
    print(f"exported update {update}: {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
