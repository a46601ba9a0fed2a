"""Failure naming for 'the same failure at the same update twice' (the train kind's table over what a trainer
said, or its log's last lines when it said nothing), and tqdm progress parsing (command mode)."""

from __future__ import annotations

from f5guard.stages.exits import ExitInfo
from f5guard.stages.verdict import ExitFacts, Failure, name_failure
from f5guard.state import TrainingRecord
from f5guard.trainevents import Checkpoint, Exit, ExitReason, Start
from f5guard.training.diagnose import KNOWN
from f5guard.training.progress import TqdmParser, fold


def classify_failure(exit: ExitInfo, lines: list[str], said: Exit | None = None) -> Failure:
    facts = ExitFacts(exit=exit, uptime_s=1.0, now=0.0, long_running=True, lines=tuple(lines), said=said, known=KNOWN)
    return name_failure(facts)


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


def test_the_trainers_own_words_come_before_the_log() -> None:
    """Lines are read only for a trainer that said nothing: an earlier attempt's OOM traceback still in the
    log does not make this attempt's error an OOM; a rank failure names what the rank's output says."""
    old_oom = ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate", "[f5guard] attempt 2: ..."]
    said = Exit(ExitReason.ERROR, update=7, detail="ValueError: bad sample")
    assert classify_failure(ExitInfo(1), old_oom, said).label == "ValueError: bad sample"
    assert classify_failure(ExitInfo(1), old_oom).key == "cuda-oom"
    rank = Exit(ExitReason.RANK_FAILED, detail="rank 1 (pid 9) exited with code 1; the other ranks were killed")
    assert classify_failure(ExitInfo(1), old_oom, rank).key == "cuda-oom"
    assert classify_failure(ExitInfo(1), [], rank).label.startswith("rank 1 (pid 9) exited with code 1")
    stopped = Exit(ExitReason.STOPPED, update=3, detail="sigterm")
    assert classify_failure(ExitInfo(0), [], stopped).label == "stopped by sigterm from outside f5guard"


def test_a_trainer_that_said_nothing_is_named_by_how_it_ended() -> None:
    """A kill -9: the exit names it (status: "last: killed by SIGKILL"); its last output only tells two such
    failures apart and is quoted in the advice."""
    killed = classify_failure(ExitInfo(-9), ["[f5guard] attempt 1: ...", "Epoch 1/8: update=12"])
    assert killed.label == "killed by SIGKILL"
    assert killed.diagnosis(12) == (
        "killed by SIGKILL at update 12 twice: its last output was 'Epoch 1/8: update=12'; "
        "see `f5guard tail --stage` for its output"
    )
    assert classify_failure(ExitInfo(-9), ["Epoch 1/8: update=13"]).key != killed.key


def test_tqdm_line_parsing() -> None:
    parser = TqdmParser()
    parser.feed("Epoch 3/200:  66%|######6   | 38909/58577 [2:49:08<1:36:29, 3.40update/s, loss=0.603, update=155717]")
    parser.feed("Saved last checkpoint at update 155717")
    events = parser.take()
    record = TrainingRecord()
    for event in events:
        fold(record, event)
    assert record.update == 155717 and record.loss == 0.603 and record.updates_per_s == 3.4 and record.epoch == 3
    assert record.total_updates == 155717 - 38909 + 58577 * 198
    assert [e for e in events if isinstance(e, Start)] == [
        Start(start_update=155717, total_updates=record.total_updates)
    ]
    assert events[-1] == Checkpoint(file="model_last.pt", update=155717, last=True)
    assert parser.take() == [], "each line is taken once"
