"""The train kind's plug-in for the daemon (config.KINDS): its driver, made on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from f5guard.stages.driver import StageDriver


def train_driver() -> StageDriver:
    """Imported on first use: a daemon with no train stage never loads the checkpoint watcher and sync machinery
    (its idle RSS stays small), and reading a config (`status`) never loads the driver at all."""
    from f5guard.training.driver import TrainDriver

    return TrainDriver()
