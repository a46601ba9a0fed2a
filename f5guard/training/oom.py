"""What to do after a CUDA out-of-memory: halve the batch and double gradient accumulation, down to a floor.

Pure decisions (no I/O), so the rule is tested on its own and the driver only applies it. Halving keeps the
effective batch (batch x grad_accumulation_steps), so the learning-rate schedule and the loss curve stay
comparable; F5-TTS's own advice for an OOM is the same (lower batch_size_per_gpu, raise accumulation).

The floor: with frame batches, F5-TTS's DynamicBatchSampler silently drops every clip longer than the budget,
so a budget below the longest clip would train on less data without saying so; the floor is the longest clip's
frames (MIN_FRAMES when duration.json cannot be read). With sample batches the floor is one sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from f5guard.trainer.batches import CPU_FRAMES

MIN_FRAMES = CPU_FRAMES // 4  # 800 frames = 8.5 s of audio: below that a frame batch holds too little to learn from
MAX_ACCUM = 2**31 - 1  # TrainSpec's bound on grad_accumulation_steps


@dataclass(frozen=True)
class Halved:
    """The next attempt's batch and accumulation."""

    batch: int
    accum: int


@dataclass(frozen=True)
class AtFloor:
    """No smaller batch is possible; ``why`` completes "CUDA out of memory at update N with ...: <why>"."""

    why: str


def unit(batch_size_type: str) -> str:
    return "frames" if batch_size_type == "frame" else "samples"


def batch_floor(batch_size_type: str, longest_clip_frames: int) -> int:
    """The smallest batch worth training with (see the module docstring)."""
    if batch_size_type != "frame":
        return 1
    return longest_clip_frames if longest_clip_frames > 0 else MIN_FRAMES


def halve(batch: int, accum: int, floor: int, batch_size_type: str) -> Halved | AtFloor:
    """Half the batch, twice the accumulation; AtFloor when the half would be under ``floor``."""
    half = batch // 2
    what = unit(batch_size_type)
    if half < max(floor, 1):
        basis = "the longest clip; F5-TTS would drop longer clips" if batch_size_type == "frame" else "one sample"
        return AtFloor(
            f"half of it ({half} {what}) is below the floor of {floor} {what} ({basis}): lower max_samples, "
            "set bnb_optimizer = true or mixed_precision, use a smaller model, or a GPU with more memory"
        )
    if accum * 2 > MAX_ACCUM:
        return AtFloor(f"grad_accumulation_steps {accum} cannot double: lower max_samples or use a bigger GPU")
    return Halved(batch=half, accum=accum * 2)


def describe(from_batch: int, from_accum: int, to: Halved, batch_size_type: str) -> str:
    """e.g. "batch 3200 -> 1600 frames x grad_accum 2" (what status shows, followed by why)."""
    what = unit(batch_size_type)
    accum = f" x grad_accum {to.accum}" if to.accum != from_accum else ""
    return f"batch {from_batch} -> {to.batch} {what}{accum}"
