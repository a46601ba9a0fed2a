"""The one restart judgment (stages/verdict.py), rule by rule: what the trainer said about its exit decides before
exit codes and log lines do; f5guard's own kill or stop is never mistaken for the end of training."""

from __future__ import annotations

from f5guard.schema import RestartPolicy
from f5guard.stages.exits import ExitInfo
from f5guard.stages.verdict import (
    ChangePrecision,
    ExitFacts,
    Failed,
    Fatal,
    Finished,
    HalveBatch,
    History,
    Restart,
    SaferPrecision,
    SmallerBatch,
    Stopped,
    judge,
)
from f5guard.trainevents import Exit, ExitReason
from f5guard.training.diagnose import KNOWN

POLICY = RestartPolicy(budget=10, window_s=600, backoff_initial_s=1)
HALF = SmallerBatch(batch=1600, accum=2, from_batch=3200, from_accum=1, unit="frames")


def trainer(code: int, said: Exit | None = None, **more: object) -> ExitFacts:
    fields: dict[str, object] = {"update": 12, "durable": 8, "known": KNOWN, "smaller_batch": HALF, **more}
    return ExitFacts(exit=ExitInfo(code), uptime_s=5.0, now=100.0, long_running=True, said=said, **fields)  # type: ignore[arg-type]


def test_a_trainer_killed_for_a_hang_is_not_finished_though_it_exits_0() -> None:
    """Defect: its graceful-stop handler exits 0 after f5guard's SIGTERM; that was taken for the end of
    training (final export and sample, up to 1200 s, before a restart)."""
    stopped = Exit(ExitReason.STOPPED, update=12, detail="sigterm")
    verdict, _ = judge(trainer(0, stopped, killed_for="no training progress for 30 min"), History(), POLICY)
    assert isinstance(verdict, Restart) and verdict.failure.label == "no training progress for 30 min"
    verdict, _ = judge(trainer(0, killed_for="no training progress for 30 min"), History(), POLICY)
    assert isinstance(verdict, Restart)


def test_finished_only_when_the_trainer_says_so_or_a_plain_command_exits_0() -> None:
    assert isinstance(judge(trainer(0, Exit(ExitReason.FINISHED, update=32)), History(), POLICY)[0], Finished)
    assert isinstance(judge(trainer(0), History(), POLICY)[0], Finished), "command mode: no events, exit 0"
    outside = judge(trainer(0, Exit(ExitReason.STOPPED, update=12, detail="sigterm")), History(), POLICY)[0]
    assert isinstance(outside, Restart), "SIGTERM from someone else is not the end of training"


def test_a_stop_is_a_stop_whatever_happened() -> None:
    said = Exit(ExitReason.CUDA_OOM, update=12, detail="OutOfMemoryError: CUDA out of memory")
    assert isinstance(judge(trainer(1, said, stopping=True), History(), POLICY)[0], Stopped)


def test_cuda_oom_in_the_trainers_words_halves_the_batch_or_stops_at_the_floor() -> None:
    said = Exit(ExitReason.CUDA_OOM, update=12, detail="OutOfMemoryError: CUDA out of memory. Tried to allocate")
    verdict, history = judge(trainer(1, said), History(), POLICY)
    assert isinstance(verdict, HalveBatch) and verdict.batch == HALF
    assert verdict.reason == "CUDA out of memory at update 12"
    assert history == History(), "a smaller batch is a change: outside the budget, no backoff"
    floor = "with batch 800 frames x grad_accum 4, and half of it (400 frames) is below the floor"
    verdict, _ = judge(trainer(1, said, smaller_batch=floor), History(), POLICY)
    assert isinstance(verdict, Fatal) and verdict.reason == f"CUDA out of memory at update 12 {floor}"


def test_same_failure_at_the_same_update_twice_is_fatal_with_a_diagnosis() -> None:
    said = Exit(ExitReason.ERROR, update=12, detail="RuntimeError: PytorchStreamReader failed reading zip archive")
    first, history = judge(trainer(1, said), History(durable_seen=8), POLICY)
    assert isinstance(first, Restart)
    second, _ = judge(trainer(1, said), history, POLICY)
    assert isinstance(second, Fatal)
    assert second.reason == "a corrupt checkpoint at update 12 twice: move the damaged file out of the checkpoint dir"
    moved_on, _ = judge(trainer(1, said, update=20), history, POLICY)
    assert isinstance(moved_on, Restart), "the same failure further on is not a loop"


def test_one_shot_stages_fail_and_generic_stages_name_no_failures() -> None:
    verdict, _ = judge(ExitFacts(exit=ExitInfo(7), uptime_s=1, now=0, long_running=False), History(), POLICY)
    assert verdict == Failed("exit code 7")
    service = ExitFacts(exit=ExitInfo(3), uptime_s=1, now=0, long_running=True, lines=("boom",))
    history = History()
    for _ in range(3):  # no "twice" rule without a kind that names failures: only the budget ends it
        verdict, history = judge(service, history, POLICY)
        assert isinstance(verdict, Restart) and verdict.failure.label == "exit code 3"


NAN = Exit(ExitReason.NONFINITE, update=7, detail="a non-finite loss", lr=8.3e-05)


def test_a_non_finite_loss_changes_to_the_next_safer_precision_outside_the_budget() -> None:
    """fp16 -> bf16 where the device has it (the driver says which), bf16 -> fp32; restarted at once and never
    counted: a spent budget does not stop it, and the budget is as full after it as before."""
    spent = History(recent=(95.0,) * POLICY.budget, consecutive=4)
    for safer in (SaferPrecision(to="bf16", frm="fp16"), SaferPrecision(to="no", frm="fp16"),
                  SaferPrecision(to="no", frm="bf16")):  # fmt: skip
        verdict, history = judge(trainer(1, NAN, safer_precision=safer), spent, POLICY)
        assert isinstance(verdict, ChangePrecision) and verdict.precision == safer, verdict
        assert verdict.reason == "a non-finite loss at update 7" and verdict.lr == 8.3e-05
        assert history == spent


def test_a_non_finite_loss_in_fp32_is_fatal_in_one_line_naming_the_update_and_the_learning_rate() -> None:
    verdict, _ = judge(trainer(1, NAN, safer_precision="in fp32 too"), History(), POLICY)
    assert isinstance(verdict, Fatal)
    assert verdict.reason == (
        "a non-finite loss at update 7, learning rate 8.3e-05, in fp32 too: then it is the data or the learning rate"
    )


def test_a_non_finite_loss_f5guard_cannot_answer_is_an_ordinary_failure() -> None:
    """No precision known (a trainer that never said what it ran in): restart within the budget, and the same
    non-finite loss at the same update twice is a loop."""
    first, history = judge(trainer(1, NAN, safer_precision=None, durable=None), History(), POLICY)
    assert isinstance(first, Restart) and first.failure.key == "nonfinite"
    assert len(history.recent) == 1
    second, _ = judge(trainer(1, NAN, safer_precision=None, durable=None), history, POLICY)
    assert isinstance(second, Fatal) and "a non-finite loss at update 12 twice: lower learning_rate" in second.reason


def test_a_trainer_stopped_at_its_gate_to_start_from_newer_restarts_at_once_uncounted() -> None:
    why = "home now holds the checkpoint at update 40 (newer than update 20 here)"
    stopped = Exit(ExitReason.STOPPED, update=20, detail="sigterm")
    spent = History(recent=(95.0,) * POLICY.budget)
    verdict, history = judge(trainer(0, stopped, relaunch=why), spent, POLICY)
    assert isinstance(verdict, Restart) and verdict.delay_s == 0 and verdict.reason == why
    assert history == spent
    assert isinstance(judge(trainer(0, stopped, relaunch=why, stopping=True), spent, POLICY)[0], Stopped)
