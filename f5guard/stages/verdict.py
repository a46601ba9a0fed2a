"""One restart judgment: how an attempt ended, in, what happens next, out. Pure (no clock, no files, no process).

In: how the process exited, the trainer's own ``exit`` event when it wrote one, whether f5guard stopped or
killed it, the update it reached and the durable one on home, and the log's last lines (read only when the
trainer said nothing useful: a crash before it could speak). Out: a Verdict, and the stage's restart history
as it is after it. The runner applies the verdict; the stage kind (its driver) supplies the facts only it knows.

The rules, in order: a stop is a stop; a trainer f5guard ended at its start gate starts again; the end of training
is the end; a one-shot stage that failed has failed; a CUDA OOM gets a smaller batch while one is possible; a
non-finite loss gets a safer precision while there is one (then FATAL: in fp32 it is the data or the learning
rate); the same failure at the same update twice is FATAL with a diagnosis (supervisord restarted a
corrupt-checkpoint crash forever); an attempt that left a newer durable checkpoint restarts at once outside the
budget (Colab's RAM OOM killer every ten minutes is progress, not a loop); otherwise an immediate first restart,
capped exponential backoff, reset after a stable uptime, and a budget per time window, then FATAL with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from f5guard.schema import RestartPolicy
from f5guard.stages.exits import ExitInfo
from f5guard.trainevents import Exit, ExitReason

TAIL_ADVICE = "see `f5guard tail --stage` for its output"
NONFINITE_ADVICE = "lower learning_rate or raise num_warmup_updates; look for broken clips in the dataset"


@dataclass(frozen=True)
class Known:
    """A failure a stage kind recognises in what its process said (an F5-TTS traceback, a message)."""

    pattern: re.Pattern[str]
    key: str
    label: str
    advice: str


@dataclass(frozen=True)
class Failure:
    """A named failure: equal keys are the same failure; the label is for people."""

    key: str
    label: str
    advice: str

    def diagnosis(self, update: int | None) -> str:
        return f"{self.label}{where(update)} twice: {self.advice}"


@dataclass(frozen=True)
class SmallerBatch:
    """The batch the next attempt would run with after a CUDA OOM (same effective batch)."""

    batch: int
    accum: int
    from_batch: int
    from_accum: int
    unit: str  # frames | samples


@dataclass(frozen=True)
class SaferPrecision:
    """The precision the next attempt would run in after a non-finite loss (accelerate's words: fp16, bf16, no)."""

    to: str
    frm: str


@dataclass(frozen=True)
class ExitFacts:
    """Everything the judgment looks at; the runner fills the generic part, the kind's driver the rest."""

    exit: ExitInfo
    uptime_s: float
    now: float  # monotonic seconds: ages the restart budget's window
    long_running: bool  # a service-like stage (a trainer) restarts; a one-shot stage fails
    stopping: bool = False  # f5guard is stopping the stage for good (daemon stop, reset, lost lease)
    killed_for: str | None = None  # f5guard killed the attempt (a hang): never "finished", whatever its code
    said: Exit | None = None  # the trainer's own exit event
    lines: tuple[str, ...] = ()  # the log's last lines
    update: int | None = None  # the last update the attempt reached
    durable: int | None = None  # the newest durable update on home now
    known: tuple[Known, ...] | None = None  # the kind's failures; None: it does not name them (no "twice" rule)
    smaller_batch: SmallerBatch | str | None = None  # after a CUDA OOM: the next batch, why none, or unknown
    safer_precision: SaferPrecision | str | None = None  # after a non-finite loss: the next, why none, or unknown
    relaunch: str | None = None  # f5guard ended a trainer still at its start gate, to start it from newer


@dataclass(frozen=True)
class History:
    """What the judgment remembers of a stage's earlier attempts (in this daemon's life)."""

    consecutive: int = 0  # restarts in a row without a stable run: the backoff exponent
    recent: tuple[float, ...] = ()  # monotonic times of budgeted restarts
    failures: tuple[tuple[str, int | None], ...] = ()  # (failure key, update) seen
    durable_seen: int = -1  # the durable update at the previous judgment (or when the stage started)


@dataclass(frozen=True)
class Finished:
    """The stage's work is done (training finished): wrap up, then DONE."""


@dataclass(frozen=True)
class Stopped:
    """f5guard stopped it: INTERRUPTED; the next start runs it again (a trainer resumes)."""


@dataclass(frozen=True)
class Restart:
    """Start another attempt after ``delay_s`` (0: in this very pass)."""

    delay_s: float
    reason: str
    failure: Failure


@dataclass(frozen=True)
class HalveBatch:
    """A CUDA OOM: restart at once with ``batch`` (``accum`` keeps the effective batch)."""

    batch: SmallerBatch
    failure: Failure
    update: int | None

    @property
    def reason(self) -> str:
        return f"{self.failure.label}{where(self.update)}"


@dataclass(frozen=True)
class ChangePrecision:
    """The NaN guard: restart at once in a safer precision (fp16 -> bf16 where the GPU has it -> fp32), from the
    newest finite checkpoint; a change, not a failure to retry, so outside the restart budget."""

    precision: SaferPrecision
    failure: Failure
    update: int | None
    lr: float | None

    @property
    def reason(self) -> str:
        return f"{self.failure.label}{where(self.update)}"


@dataclass(frozen=True)
class Fatal:
    """Restarting would loop: FATAL with the reason (and a diagnosis where the failure is known)."""

    reason: str


@dataclass(frozen=True)
class Failed:
    """A one-shot stage failed: FAILED with the reason; the run stops there."""

    reason: str


Verdict = Finished | Stopped | Restart | HalveBatch | ChangePrecision | Fatal | Failed


def where(update: int | None) -> str:
    return f" at update {update}" if update is not None else " before the first update"


def judge(facts: ExitFacts, history: History, policy: RestartPolicy) -> tuple[Verdict, History]:
    """The verdict on one ended attempt, and the history after it."""
    said = facts.said
    if facts.stopping:
        return Stopped(), history
    if facts.relaunch is not None:  # it trained nothing yet: start it again from what home holds, at no cost
        return Restart(0.0, facts.relaunch, Failure("relaunch", facts.relaunch, "nothing to do")), history
    if said is not None and said.reason is ExitReason.FINISHED and facts.killed_for is None:
        return Finished(), history
    if facts.exit.ok and facts.killed_for is None and said is None:
        return Finished(), history
    described = facts.killed_for or facts.exit.describe()
    if not facts.long_running:
        return Failed(described), history
    failure = name_failure(facts)
    if failure.key == "cuda-oom" and facts.smaller_batch is not None:
        if isinstance(facts.smaller_batch, SmallerBatch):
            return HalveBatch(facts.smaller_batch, failure, facts.update), history
        return Fatal(f"{failure.label}{where(facts.update)} {facts.smaller_batch}"), history
    if (said is not None and said.reason is ExitReason.NONFINITE and facts.killed_for is None
            and facts.safer_precision is not None):  # fmt: skip
        if isinstance(facts.safer_precision, SaferPrecision):
            return ChangePrecision(facts.safer_precision, failure, said.update, said.lr), history
        lr = f", learning rate {said.lr:g}" if said.lr is not None else ""
        return Fatal(f"{failure.label}{where(said.update)}{lr}, {facts.safer_precision}: "
                     "then it is the data or the learning rate"), history  # fmt: skip
    durable_seen = facts.durable if facts.durable is not None else history.durable_seen
    if facts.known is not None:
        key = (failure.key, facts.update)
        if key in history.failures:
            return Fatal(failure.diagnosis(facts.update)), history
        history = replace(history, failures=(*history.failures, key))
    if facts.durable is not None and facts.durable > history.durable_seen:
        reason = "restart after an attempt that made progress (not counted in the budget)"
        return Restart(0.0, reason, failure), replace(history, consecutive=1, durable_seen=durable_seen)
    recent = tuple(t for t in history.recent if facts.now - t <= policy.window_s)
    if len(recent) >= policy.budget:
        exhausted = (
            f"restart budget exhausted: {len(recent)} restarts in the last {policy.window_s:g}s "
            f"(restart.budget = {policy.budget})"
        )
        return Fatal(f"{described}; {exhausted}"), replace(history, recent=recent, durable_seen=durable_seen)
    consecutive = 0 if facts.uptime_s >= policy.stable_after_s else history.consecutive
    delay = (
        0.0
        if consecutive == 0
        else min(policy.backoff_max_s, policy.backoff_initial_s * policy.backoff_factor ** min(consecutive - 1, 64))
    )
    recent = (*recent, facts.now)
    reason = f"restart {len(recent)} of {policy.budget} in {policy.window_s:g}s, after {delay:g}s"
    after = replace(history, consecutive=consecutive + 1, recent=recent, durable_seen=durable_seen)
    return Restart(delay, reason, failure), after


_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Interrupt)):?\s*(.*)$")


def name_failure(facts: ExitFacts) -> Failure:
    """What went wrong, from the trainer's own words when it said any, else from the log's last lines."""
    exit, said, described = facts.exit, facts.said, facts.killed_for or facts.exit.describe()
    if facts.killed_for is not None:
        return Failure(f"killed:{facts.killed_for}", facts.killed_for, TAIL_ADVICE)
    if facts.known is None:  # a kind that names no failures: how it ended is all there is
        return Failure(f"exit:{described}", described, TAIL_ADVICE)
    if said is not None and said.reason is ExitReason.STOPPED:
        how = f"stopped by {said.detail}" if said.detail else "stopped"
        return Failure(f"stopped:{said.detail}", f"{how} from outside f5guard", "nothing to change if that was you")
    if said is not None and said.reason is ExitReason.NONFINITE:
        return Failure("nonfinite", said.detail or "a non-finite loss", NONFINITE_ADVICE)
    if said is not None and said.reason is not ExitReason.RANK_FAILED and said.detail:
        return _named([said.detail], facts.known, exit) or _said_error(said, said.detail)
    found = _named(list(facts.lines), facts.known, exit)
    if found is not None:
        return found
    if said is not None:  # a rank failed and its output named nothing known: the launcher's words
        return _said_error(said, said.detail or said.reason.value)
    line = next((x.strip() for x in reversed(facts.lines) if x.strip() and not x.startswith("[f5guard]")), None)
    if line is not None:  # how it ended is the name; its last words tell one such failure from another
        line = line[:200]
        return Failure(f"exit:{described}:{line}", described, f"its last output was {line!r}; {TAIL_ADVICE}")
    return Failure(f"exit:{described}", described, TAIL_ADVICE)


def _named(lines: list[str], known: tuple[Known, ...], exit: ExitInfo) -> Failure | None:
    """A known failure in ``lines``, a kernel OOM kill, or a Python error line; None when none of these."""
    text = "\n".join(lines)
    for k in known:
        if k.pattern.search(text):
            return Failure(k.key, k.label, k.advice)
    if exit.oom:
        return Failure(
            "ram-oom",
            "killed by the kernel's OOM killer",
            "lower batch_size_per_gpu or num_workers (each worker copies the dataset)",
        )
    error = next((m for line in reversed(lines) if (m := _ERROR_LINE.match(line))), None)
    if error is not None:
        message = error.group(3)[:160]
        return Failure(f"error:{error.group(1)}:{message}", f"{error.group(1)}: {message}", TAIL_ADVICE)
    return None


def _said_error(said: Exit, detail: str) -> Failure:
    text = " ".join(detail.split())[:200]
    return Failure(f"{said.reason.value}:{text}", text, TAIL_ADVICE)
