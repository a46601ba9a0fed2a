"""Name a trainer's failure from its exit and last lines, so "the same failure at the same update twice" can
stop the run with advice instead of looping (supervisord restarted a corrupt-checkpoint crash forever)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from f5guard.stages.exits import ExitInfo


@dataclass(frozen=True)
class Failure:
    key: str  # equal keys = the same failure
    label: str  # what happened, for people
    advice: str  # what to change

    def diagnosis(self, update: int | None) -> str:
        where = f" at update {update}" if update is not None else " before the first update"
        return f"{self.label}{where} twice: {self.advice}"


_KNOWN = [
    (
        re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED"),
        "cuda-oom",
        "CUDA out of memory",
        "lower batch_size_per_gpu (or max_samples)",
    ),
    (
        re.compile(r"DataLoader worker \(pid.*\) is killed by signal"),
        "worker-killed",
        "a DataLoader worker was killed (RAM)",
        "lower num_workers or batch_size_per_gpu",
    ),
    (
        re.compile(r"size mismatch for .*(text_embed|text_blocks)"),
        "vocab-mismatch",
        "the vocab does not match the pretrained text embedding",
        "extend the pretrained checkpoint's vocab to the dataset's vocab.txt (F5-TTS #449 #740 #870)",
    ),
    (
        re.compile(r"PytorchStreamReader failed|failed finding central directory"),
        "corrupt-checkpoint",
        "a corrupt checkpoint",
        "move the damaged file out of the checkpoint dir",
    ),
    (
        re.compile(r"loss.*\bnan\b|\bnan\b.*loss", re.IGNORECASE),
        "nan",
        "the loss became NaN",
        "lower learning_rate or raise num_warmup_updates",
    ),
]
_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Interrupt)):?\s*(.*)$")


def classify_failure(exit: ExitInfo, lines: list[str]) -> Failure:
    text = "\n".join(lines)
    for pattern, key, label, advice in _KNOWN:
        if pattern.search(text):
            return Failure(key, label, advice)
    if exit.oom:
        return Failure(
            "ram-oom",
            "killed by the kernel's OOM killer",
            "lower batch_size_per_gpu or num_workers (each worker copies the dataset)",
        )
    error = next((m for line in reversed(lines) if (m := _ERROR_LINE.match(line))), None)
    if error is not None:
        message = error.group(3)[:160]
        return Failure(
            f"error:{error.group(1)}:{message}",
            f"{error.group(1)}: {message}",
            "see `f5guard tail --stage` for the traceback",
        )
    said = next((line.strip() for line in reversed(lines) if line.strip() and not line.startswith("[f5guard]")), None)
    if said is not None:
        said = said[:200]
        return Failure(
            f"exit:{exit.describe()}:{said}",
            f"the trainer ended ({exit.describe()}) saying {said!r}",
            "see `f5guard tail --stage` for its output",
        )
    return Failure(
        f"exit:{exit.describe()}", f"the trainer {exit.describe()}", "see `f5guard tail --stage` for its last output"
    )
