"""Per-kind behaviour around a stage's attempts: the generic kind needs none, the trainer a lot.

A driver may prepare before each attempt (restore a checkpoint), look at a running attempt on every control
pass (progress, hangs, sync), and judge a failure (same crash at the same update twice -> FATAL).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from f5guard.itemprogress import read_latest

if TYPE_CHECKING:
    from f5guard.exits import ExitInfo
    from f5guard.stages.runner import StageRunner


class StageDriver:
    """The default: a plain command; it only follows the item progress the stage may report."""

    def __init__(self) -> None:
        self._items_seen: tuple[int, int] | None = None
        self._items_origin: tuple[float, int] | None = None  # (monotonic time, done) of the first report

    def before_attempt(self, runner: StageRunner) -> float | None:
        """Called before every attempt, the first and each restart. A number means "not now: ask again in
        that many seconds" (e.g. home must answer before a fresh VM may start training from scratch)."""
        return None

    def poll(self, runner: StageRunner, now: float) -> str | None:
        """Called on every control pass while an attempt runs; a returned reason kills the attempt."""
        self.follow_items(runner, now)
        return None

    def follow_items(self, runner: StageRunner, now: float) -> None:
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

    def fatal_reason(self, runner: StageRunner, exit: ExitInfo) -> str | None:
        """Called after a failed attempt of a long-running stage; a reason stops restarting (FATAL)."""
        return None

    def after_exit(self, runner: StageRunner, exit: ExitInfo) -> None:
        """Called after every attempt, whatever its outcome."""

    def on_line(self, runner: StageRunner, line: str) -> None:
        """Every output line and tqdm redraw, on the pump thread: keep it quick and thread-safe."""

    def close(self, runner: StageRunner) -> None:
        """The stage reached a final state in this daemon's life: release what the driver holds."""


_DRIVERS: dict[str, type[StageDriver]] = {}
# Modules that register a driver, imported on first use: a daemon with no train stage never loads the
# checkpoint watcher and sync machinery (its idle RSS stays small).
_DRIVER_MODULES = {"train": "f5guard.training"}


def register_driver(kind: str, driver: type[StageDriver]) -> None:
    _DRIVERS[kind] = driver


def driver_class(kind: str) -> type[StageDriver]:
    if kind not in _DRIVERS and kind in _DRIVER_MODULES:
        importlib.import_module(_DRIVER_MODULES[kind])
    return _DRIVERS.get(kind, StageDriver)
