"""Failure naming for 'the same failure at the same update twice', and tqdm progress parsing (command mode)."""

from __future__ import annotations

from f5guard.stages.exits import ExitInfo
from f5guard.training.diagnose import classify_failure
from f5guard.training.progress import Progress, TqdmParser


def test_cuda_oom_diagnosis() -> None:
    lines = ["Traceback (most recent call last):", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate"]
    failure = classify_failure(ExitInfo(1), lines)
    assert failure.key == "cuda-oom"
    assert (
        failure.diagnosis(1200) == "CUDA out of memory at update 1200 twice: lower batch_size_per_gpu (or max_samples)"
    )


def test_ram_oom_needs_proof() -> None:
    assert classify_failure(ExitInfo(-9, oom=True), []).key == "ram-oom"
    assert classify_failure(ExitInfo(-9), []).key.startswith("exit:killed by SIGKILL")


def test_python_error_line_names_the_failure() -> None:
    failure = classify_failure(ExitInfo(1), ["  File x", "ValueError: invalid literal for int() with base 10: ''"])
    assert failure.label == "ValueError: invalid literal for int() with base 10: ''"
    assert classify_failure(ExitInfo(1), ["ValueError: other"]).key != failure.key


def test_vocab_mismatch_advice() -> None:
    lines = [
        "RuntimeError: Error(s) in loading state_dict for CFM:",
        "size mismatch for transformer.text_embed.text_embed.weight: copying a param with shape",
    ]
    assert "extend the pretrained" in classify_failure(ExitInfo(1), lines).advice


def test_tqdm_line_parsing() -> None:
    parser = TqdmParser()
    parser.feed("Epoch 3/200:  66%|######6   | 38909/58577 [2:49:08<1:36:29, 3.40update/s, loss=0.603, update=155717]")
    parser.feed("Saved last checkpoint at update 155717")
    progress = Progress()
    assert parser.take(progress) is True
    assert progress.update == 155717 and progress.loss == 0.603 and progress.updates_per_s == 3.4
    assert progress.epoch == 3 and progress.epochs == 200
    assert progress.total_updates == 155717 - 38909 + 58577 * 198
    assert parser.take(progress) is False, "the checkpoint announcement is consumed once"
