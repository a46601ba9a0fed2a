"""Per-kind behaviour around a stage's attempts: the generic kind needs none, the trainer a lot.

A driver may prepare before each attempt (restore a checkpoint), look at a running attempt on every control
pass (progress, hangs, sync), and judge a failure (same crash at the same update twice -> FATAL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from f5guard.exits import ExitInfo
    from f5guard.stages.runner import StageRunner


class StageDriver:
    """The default: a plain command, nothing around it."""

    def before_attempt(self, runner: StageRunner) -> None:
        """Called before every attempt, the first and each restart."""

    def poll(self, runner: StageRunner, now: float) -> str | None:
        """Called on every control pass while an attempt runs; a returned reason kills the attempt."""
        return None

    def fatal_reason(self, runner: StageRunner, exit: ExitInfo) -> str | None:
        """Called after a failed attempt of a long-running stage; a reason stops restarting (FATAL)."""
        return None

    def after_exit(self, runner: StageRunner, exit: ExitInfo) -> None:
        """Called after every attempt, whatever its outcome."""

    def idle(self, runner: StageRunner, now: float) -> None:
        """Called on control passes after the stage ended (e.g. to finish a sync)."""


_DRIVERS: dict[str, type[StageDriver]] = {}


def register_driver(kind: str, driver: type[StageDriver]) -> None:
    _DRIVERS[kind] = driver


def driver_class(kind: str) -> type[StageDriver]:
    return _DRIVERS.get(kind, StageDriver)
