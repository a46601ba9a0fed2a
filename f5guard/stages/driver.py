"""Per-kind behaviour around a stage's attempts: the generic kind needs none, the trainer a lot.

A driver may prepare before each attempt (restore a checkpoint), look at a running attempt on every control
pass (progress, hangs, sync), and judge a failure (same crash at the same update twice -> FATAL).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from f5guard.exits import ExitInfo
    from f5guard.stages.runner import StageRunner


class StageDriver:
    """The default: a plain command, nothing around it."""

    def before_attempt(self, runner: StageRunner) -> float | None:
        """Called before every attempt, the first and each restart. A number means "not now: ask again in
        that many seconds" (e.g. home must answer before a fresh VM may start training from scratch)."""
        return None

    def poll(self, runner: StageRunner, now: float) -> str | None:
        """Called on every control pass while an attempt runs; a returned reason kills the attempt."""
        return None

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
