"""The F5-TTS failures the train kind recognises in what a trainer said, each with advice, so "the same failure
at the same update twice" (stages/verdict.py) stops the run with a diagnosis instead of looping."""

from __future__ import annotations

import re

from f5guard.stages.verdict import Known

KNOWN: tuple[Known, ...] = (
    Known(
        re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED"),
        "cuda-oom",
        "CUDA out of memory",
        "lower batch_size_per_gpu (or max_samples)",
    ),
    Known(
        re.compile(r"DataLoader worker \(pid.*\) is killed by signal"),
        "worker-killed",
        "a DataLoader worker was killed (RAM)",
        "lower num_workers or batch_size_per_gpu",
    ),
    Known(
        re.compile(r"size mismatch for .*(text_embed|text_blocks)"),
        "vocab-mismatch",
        "the vocab does not match the pretrained text embedding",
        "extend the pretrained checkpoint's vocab to the dataset's vocab.txt (F5-TTS #449 #740 #870)",
    ),
    Known(
        re.compile(r"PytorchStreamReader failed|failed finding central directory"),
        "corrupt-checkpoint",
        "a corrupt checkpoint",
        "move the damaged file out of the checkpoint dir",
    ),
    Known(
        re.compile(r"loss.*\bnan\b|\bnan\b.*loss", re.IGNORECASE),
        "nan",
        "the loss became NaN",
        "lower learning_rate or raise num_warmup_updates",
    ),
)
