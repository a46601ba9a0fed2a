"""Per-kind behaviour around a stage's attempts: the generic kind needs none, the trainer a lot.

A driver may prepare before each attempt (restore a checkpoint), look at a running attempt on every control
pass (progress, hangs, sync), and judge a failure (same crash at the same update twice -> FATAL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from f5guard.itemprogress import read_latest
from f5guard.schema import RunConfig, StageConfig
from f5guard.stages.attempt import Attempt
from f5guard.stages.context import RunContext
from f5guard.stages.exits import ExitInfo
from f5guard.stages.stagelog import StageLog
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

    def progressed(self, runner: StageRunnerView) -> bool:
        """Did the attempt that just ended leave progress that survives it? Such restarts are not budgeted."""
        return False

    def fatal_reason(self, runner: StageRunnerView, exit: ExitInfo) -> str | None:
        """Called after a failed attempt of a long-running stage; a reason stops restarting (FATAL)."""
        return None

    def after_exit(self, runner: StageRunnerView, exit: ExitInfo) -> None:
        """Called after every attempt, whatever its outcome."""

    def on_line(self, runner: StageRunnerView, line: str) -> None:
        """Every output line and tqdm redraw, on the pump thread: keep it quick and thread-safe."""

    def close(self, runner: StageRunnerView) -> None:
        """The stage reached a final state in this daemon's life: release what the driver holds."""
