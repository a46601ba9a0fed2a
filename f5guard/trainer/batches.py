"""``batch_size_per_gpu = "auto"``: a frame budget per GPU batch from the GPU's memory and the model preset.

Torch-free plain arithmetic, so it is documented and tested without a GPU; the trainer feeds it what torch says
about the GPU. The numbers are estimates, anchored on F5-TTS's own figures (docs/config.md says so too):

* configs/F5TTS_v1_Base.yaml trains Base with 38400 frames per GPU on A100 80 GB under bf16;
* the finetune Gradio UI's "auto settings" (train/finetune_gradio.py calculate_train) scales that linearly:
  ``38400 * (GPU GiB - 5) / 75``, i.e. 512 frames per GiB above 5 GiB left for CUDA context, weights and Adam.

On top of that: Small's activations per frame are ~0.6 of Base's (dim x depth: 768 x 18 vs 1024 x 22), so it
gets 1.6x the frames; fp32 activations take twice the bytes of bf16/fp16, so "no" mixed precision halves the
budget; and 15 % headroom, since F5-TTS's figure is a tuned maximum and a Colab GPU also holds the notebook's
leftovers. An OOM all the same is handled by the daemon (training/oom.py halves the batch).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

CPU_FRAMES = 3200  # the finetune UI's default; on a CPU the batch is bounded by time, not memory
RESERVED_GIB = 5.0  # calculate_train's "- 5": CUDA context, weights, gradients and Adam state of Base
BASE_FRAMES_PER_GIB = 38400 / 75  # F5TTS_v1_Base.yaml's 38400 frames on an 80 GB A100 (75 GiB above the reserve)
HEADROOM = 0.85
FP32_FACTOR = 0.5  # activations in fp32 take twice the memory of bf16/fp16
ROUND_TO = 100
# Activation memory per frame relative to Base (dim x depth); tiny is a test model, bounded by max_samples anyway.
PRESET_SCALE: Mapping[str, float] = MappingProxyType({"base": 1.0, "small": 1.6, "tiny": 8.0})
HOP_LENGTH, SAMPLE_RATE = 256, 24000  # the mel front end of every F5-TTS v1 config (trainer/presets.py MEL_SPEC)


def clip_frames(seconds: float) -> int:
    """Mel frames of a clip of ``seconds`` (what duration.json holds), rounded up: F5-TTS compares its
    fractional get_frame_len with the budget."""
    return math.ceil(seconds * SAMPLE_RATE / HOP_LENGTH)


def auto_frames(preset: str, gpu_memory_gib: float | None, precision: str, longest_clip_frames: int = 0) -> int:
    """Frames per GPU batch for ``preset`` on a GPU with ``gpu_memory_gib`` total memory (None: no GPU, CPU_FRAMES).

    Never below the longest clip: F5-TTS's DynamicBatchSampler silently drops every clip longer than the budget.
    """
    if gpu_memory_gib is None:
        frames = CPU_FRAMES
    else:
        usable = max(0.0, gpu_memory_gib - RESERVED_GIB)
        estimate = usable * BASE_FRAMES_PER_GIB * PRESET_SCALE.get(preset, 1.0) * HEADROOM
        if precision == "no":
            estimate *= FP32_FACTOR
        frames = int(estimate // ROUND_TO * ROUND_TO)
    return max(frames, longest_clip_frames, 1)


def longest_clip_frames(dataset_dir: Path) -> int:
    """The dataset's longest clip in mel frames, from its duration.json (0 when that cannot be read)."""
    try:
        with (dataset_dir / "duration.json").open(encoding="utf-8") as handle:
            durations = json.load(handle)["duration"]
        return clip_frames(max(float(d) for d in durations))
    except (OSError, ValueError, KeyError, TypeError):
        return 0
