"""Evidence that a resume restored everything: compare the live Trainer with the file it loaded.

Enabled by F5GUARD_TRAIN_VERIFY_RESUME=1 (tests, diagnosis); costs one extra torch.load of the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def same(a: Any, b: Any) -> bool:
    """Deep equality where tensors must match exactly (dtype, shape and every value)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and bool(torch.equal(a.cpu(), b.cpu())))  # fmt: skip
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def compare_with_checkpoint(trainer: Any, path: Path) -> dict[str, Any]:
    """Booleans per part (model, EMA, optimizer, scheduler) plus the Adam step the optimizer resumed at."""
    saved = torch.load(path, weights_only=True, map_location="cpu")
    model = trainer.accelerator.unwrap_model(trainer.model)
    optimizer_state = trainer.optimizer.state_dict()
    steps = [s["step"] for s in optimizer_state["state"].values() if "step" in s]
    return {
        "file": path.name,
        "update": saved.get("update", saved.get("step")),
        "model_equal": same(saved["model_state_dict"], model.state_dict()),
        # F5-TTS keeps the EMA on the main rank only
        "ema_equal": same(saved["ema_model_state_dict"], trainer.ema_model.state_dict())
        if hasattr(trainer, "ema_model")
        else None,
        "optimizer_equal": same(saved["optimizer_state_dict"], optimizer_state),
        "scheduler_equal": same(saved["scheduler_state_dict"], trainer.scheduler.state_dict()),
        "adam_step": float(steps[0]) if steps else None,
        # Under mixed precision the weights, EMA and Adam moments must stay fp32 (autocast only computes in
        # bf16/fp16): equal fp32 tensors are a resume that lost nothing, not one rounded to half precision.
        "dtypes": {
            part: sorted({str(t.dtype).removeprefix("torch.") for t in _tensors(saved[key])})
            for part, key in (
                ("model", "model_state_dict"),
                ("ema", "ema_model_state_dict"),
                ("optimizer", "optimizer_state_dict"),
            )
        },
    }


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []
