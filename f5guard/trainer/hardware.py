"""What the trainer runs on, and the spec settings that depend on it: mixed precision, 8-bit Adam, "auto" batches.

The probe imports torch (the trainer process only); the decisions are plain functions of what it found, so they
are tested without a GPU. A decision the machine cannot honour is a SpecError: one line, exit 2.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass

from f5guard.trainer.batches import auto_frames, longest_clip_frames
from f5guard.trainer.spec import AUTO, MixedPrecision, SpecError, TrainSpec
from f5guard.trainevents import SetupNote

BF16_MIN_CAPABILITY = 8  # Ampere (A100, L4, RTX 30xx) and newer compute bf16 natively; T4 (7.5) and V100 (7.0) do not


@dataclass(frozen=True)
class Hardware:
    """The device training runs on: a CUDA GPU (name, compute capability, total memory) or the CPU."""

    device: str  # the GPU's name, or "cpu"
    cuda: bool
    capability: tuple[int, int] | None = None
    memory_gib: float | None = None


def probe() -> Hardware:
    """The first visible CUDA GPU (where accelerate puts a single-process run), else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return Hardware(device="cpu", cuda=False)
    props = torch.cuda.get_device_properties(0)
    return Hardware(
        device=str(props.name),
        cuda=True,
        capability=(int(props.major), int(props.minor)),
        memory_gib=round(props.total_memory / 2**30, 1),
    )


def resolve_precision(requested: MixedPrecision, hw: Hardware) -> MixedPrecision:
    """accelerate's mixed_precision for ``requested`` on ``hw``. fp16 on a CPU would silently train in fp32
    (accelerate only autocasts fp16 on accelerators): refuse it. bf16 on a CPU is real (CPU autocast)."""
    if requested == AUTO:
        if not hw.cuda:
            return "no"
        return "bf16" if bf16_supported(hw) else "fp16"
    if requested == "fp16" and not hw.cuda:
        raise SpecError(
            "mixed_precision 'fp16' needs a CUDA GPU and this trainer sees none: use 'auto', 'bf16' or 'no'"
        )
    return requested


def check_bnb(spec: TrainSpec, hw: Hardware) -> None:
    """F5-TTS imports bitsandbytes only inside Trainer(): fail here with one line instead of a traceback."""
    if not spec.bnb_optimizer:
        return
    if not hw.cuda:
        raise SpecError("bnb_optimizer = true needs a CUDA GPU (bitsandbytes' 8-bit Adam) and this trainer sees none")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise SpecError("bnb_optimizer = true needs the bitsandbytes package: pip install bitsandbytes")


def resolve(spec: TrainSpec, hw: Hardware) -> tuple[TrainSpec, SetupNote]:
    """The spec with every "auto" made concrete for ``hw``, and the ``setup`` fields of the start event."""
    check_bnb(spec, hw)
    precision = resolve_precision(spec.mixed_precision, hw)
    batch = spec.batch_size_per_gpu
    if batch == AUTO:
        batch = auto_frames(
            spec.model, hw.memory_gib if hw.cuda else None, precision, longest_clip_frames(spec.dataset_dir)
        )
    resolved = dataclasses.replace(spec, mixed_precision=precision, batch_size_per_gpu=batch)
    setup = SetupNote(
        precision=precision,
        precision_requested=spec.mixed_precision,
        device=hw.device,
        gpu_memory_gib=hw.memory_gib,
        batch_size_per_gpu=int(batch),
        batch_size_type=spec.batch_size_type,
        batch_auto=spec.batch_size_per_gpu == AUTO,
        grad_accumulation_steps=spec.grad_accumulation_steps,
        bnb_optimizer=spec.bnb_optimizer,
        bf16_supported=bf16_supported(hw),
    )
    return resolved, setup


def bf16_supported(hw: Hardware) -> bool:
    """bf16 is computed natively (Ampere and newer), or on a CPU by its autocast: the NaN guard's step after fp16."""
    return not hw.cuda or (hw.capability is not None and hw.capability[0] >= BF16_MIN_CAPABILITY)
