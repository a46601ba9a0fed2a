"""Per-kind behaviour around a stage's attempts (a stage kind's plug-in): the generic kind needs none, the
trainer a lot.

A driver may prepare before each attempt (restore a checkpoint), look at a running attempt on every control
pass (progress, hangs, sync), add what only it knows to the facts of an ended attempt (the trainer's exit
event, the durable update), wrap up after the verdict (the final sync, export and sample: polled, never waited
for on the control thread) and apply a verdict that changes the next attempt (a smaller batch). The judgment
itself is one function for every kind (stages/verdict.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from f5guard.itemprogress import read_latest
from f5guard.schema import RunConfig, StageConfig
from f5guard.stages.attempt import Attempt
from f5guard.stages.context import RunContext
from f5guard.stages.stagelog import StageLog
from f5guard.stages.verdict import ChangePrecision, ExitFacts, HalveBatch, Verdict
from f5guard.state import RunRecord, StageRecord


class StageRunnerView(Protocol):
    """What a driver may use of the stage runner that owns it (the runner is ``stages.runner.StageRunner``)."""

    run: RunConfig
    stage: StageConfig
    record: StageRecord
    run_record: RunRecord
    ctx: RunContext
    log: Any  # a bound structlog logger
    stage_log: StageLog
    attempt: Attempt | None
    stopping: bool

    @property
    def items_path(self) -> Path: ...

    def mark_dirty(self) -> None: ...


class StageDriver:
    """The default: a plain command; it only follows the item progress the stage may report."""

    def __init__(self) -> None:
        self._items_seen: tuple[int, int] | None = None
        self._items_origin: tuple[float, int] | None = None  # (monotonic time, done) of the first report

    def before_attempt(self, runner: StageRunnerView) -> float | None:
        """Called before every attempt, the first and each restart. A number means "not now: ask again in
        that many seconds" (e.g. home must answer before a fresh VM may start training from scratch)."""
        return None

    def poll(self, runner: StageRunnerView, now: float) -> str | None:
        """Called on every control pass while an attempt runs; a returned reason kills the attempt."""
        self.follow_items(runner, now)
        return None

    def follow_items(self, runner: StageRunnerView, now: float) -> None:
        """Fold the stage's $F5GUARD_PROGRESS reports into its record: done/total and an ETA from the rate."""
        latest = read_latest(runner.items_path)
        if latest is None or latest == self._items_seen:
            return
        self._items_seen = latest
        done, total = latest
        if self._items_origin is None or done < self._items_origin[1]:
            self._items_origin = (now, done)
        start_t, start_done = self._items_origin
        record = runner.record
        record.items_done, record.items_total = done, total
        rate = (done - start_done) / (now - start_t) if now > start_t and done > start_done else None
        record.items_eta_s = round((total - done) / rate, 1) if rate else None
        runner.mark_dirty()

    def durable_update(self, runner: StageRunnerView) -> int | None:
        """The newest update of the stage's work that survives this machine (None: the kind keeps none)."""
        return None

    def facts(self, runner: StageRunnerView, facts: ExitFacts) -> ExitFacts:
        """What the kind knows about an ended attempt, added to the runner's generic facts."""
        return facts

    def before_kill(self, runner: StageRunnerView, attempt: Attempt) -> None:
        """Runs on the thread that kills a hung attempt, before it is stopped (e.g. dump its stacks)."""

    def wrap_up(self, runner: StageRunnerView, verdict: Verdict) -> str | None:
        """Begin what must happen before the verdict takes effect; a description while it runs (status shows
        it), None when there is nothing to wait for. Never blocks: ``wrapped`` is polled."""
        return None

    def wrapped(self, runner: StageRunnerView) -> bool:
        """Polled on the control thread after ``wrap_up``: True once the wrap-up ended (or gave up)."""
        return True

    def apply(self, runner: StageRunnerView, verdict: HalveBatch | ChangePrecision) -> bool:
        """Change what the next attempt runs with; False when this kind cannot (the runner then fails)."""
        return False

    def on_line(self, runner: StageRunnerView, line: str) -> None:
        """Every output line and tqdm redraw, on the pump thread: keep it quick and thread-safe."""

    def close(self, runner: StageRunnerView) -> None:
        """The stage reached a final state in this daemon's life: release what the driver holds."""
