"""Training progress as the daemon sees it: JSON events from the built-in trainer, or tqdm lines from a user's
own F5-TTS command, folded into one small record for state and status."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from f5guard.state import SetupNote, TrainingRecord
from f5guard.trainer.progress import read_events

_TQDM_EPOCH = re.compile(r"Epoch (\d+)/(\d+)")
_TQDM_BAR = re.compile(r"\|\s*(\d+)/(\d+) \[")
_TQDM_RATE = re.compile(r"([\d.]+)update/s")
_TQDM_LOSS = re.compile(r"loss=([-\d.eE+naif]+)")
_TQDM_UPDATE = re.compile(r"update=(\d+)")
_SAVED_LAST = re.compile(r"Saved last checkpoint at update (\d+)")


@dataclass
class Progress:
    """The latest known training position; times are this machine's monotonic clock."""

    update: int | None = None
    total_updates: int | None = None
    loss: float | None = None
    lr: float | None = None
    updates_per_s: float | None = None
    epoch: int | None = None
    epochs: int | None = None
    start_update: int | None = None
    last_event_mono: float | None = None
    checkpoints_seen: int = 0
    exit_reason: str | None = None
    setup: SetupNote | None = None  # this attempt's device, precision and batch (the built-in trainer's start)
    processes: int | None = None  # ranks of the training (num_processes), from the start event

    def eta_s(self) -> float | None:
        if self.update is None or not self.total_updates or not self.updates_per_s:
            return None
        return max(0.0, (self.total_updates - self.update) / self.updates_per_s)

    def fold_into(self, record: TrainingRecord) -> None:
        """Copy what status shows into the run's training record."""
        record.update, record.total_updates, record.epoch = self.update, self.total_updates, self.epoch
        record.loss, record.updates_per_s = self.loss, self.updates_per_s
        record.eta_s = None if (eta := self.eta_s()) is None else round(eta, 1)
        if self.setup is not None:
            record.setup = self.setup
        record.processes = self.processes


class EventReader:
    """Reads the built-in trainer's progress file incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0  # only this attempt's events

    def poll(self, progress: Progress) -> list[dict[str, Any]]:
        """Fold new events into ``progress``; returns them (the caller reacts to checkpoints)."""
        if not self.path.exists():
            return []
        events, self.offset = read_events(self.path, self.offset)
        for event in events:
            progress.last_event_mono = time.monotonic()
            kind = event.get("event")
            if kind == "start":
                progress.start_update = progress.update = event.get("start_update")
                progress.total_updates = event.get("total_updates") or progress.total_updates
                progress.epochs = event.get("epochs") or progress.epochs
                progress.setup = _setup(event.get("setup"))
                progress.processes = event.get("processes", progress.processes)
            elif kind == "update":
                progress.update = event.get("update", progress.update)
                progress.loss = event.get("loss")
                progress.lr = event.get("lr")
                progress.epoch = event.get("epoch", progress.epoch)
                if event.get("updates_per_s"):
                    progress.updates_per_s = event["updates_per_s"]
            elif kind == "checkpoint":
                progress.checkpoints_seen += 1
            elif kind == "exit":
                progress.exit_reason = event.get("reason")
        return events


def _setup(value: Any) -> SetupNote | None:
    """The start event's ``setup`` as a typed note; None from a trainer that reports none (or garbage)."""
    if not isinstance(value, dict):
        return None
    try:
        return SetupNote(
            precision=str(value["precision"]),
            precision_requested=str(value["precision_requested"]),
            device=str(value["device"]),
            gpu_memory_gib=None if value.get("gpu_memory_gib") is None else float(value["gpu_memory_gib"]),
            batch_size_per_gpu=int(value["batch_size_per_gpu"]),
            batch_size_type=str(value["batch_size_type"]),
            batch_auto=bool(value["batch_auto"]),
            grad_accumulation_steps=int(value["grad_accumulation_steps"]),
            bnb_optimizer=bool(value["bnb_optimizer"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


class TqdmParser:
    """Parses F5-TTS's tqdm bar (``update=`` is the global counter) from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest = Progress()
        self._saved = 0

    def feed(self, line: str) -> None:
        with self._lock:
            p = self._latest
            if m := _TQDM_UPDATE.search(line):
                # tqdm redraws on update(1) before set_postfix(update=...): a line's postfix may lag its bar
                # by one, so both the counter and the derived total only ever move up.
                update = int(m.group(1))
                p.update = max(update, p.update or 0)
                p.last_event_mono = time.monotonic()
                if (bar := _TQDM_BAR.search(line)) and (ep := _TQDM_EPOCH.search(line)):
                    done, per_epoch = int(bar.group(1)), int(bar.group(2))
                    p.epoch, p.epochs = int(ep.group(1)), int(ep.group(2))
                    total = update - done + per_epoch * (p.epochs - p.epoch + 1)
                    p.total_updates = max(total, p.total_updates or 0)
                if rate := _TQDM_RATE.search(line):
                    p.updates_per_s = float(rate.group(1))
                if loss := _TQDM_LOSS.search(line):
                    try:
                        p.loss = float(loss.group(1))
                    except ValueError:
                        p.loss = None
            if _SAVED_LAST.search(line):
                self._saved += 1
                p.last_event_mono = time.monotonic()

    def take(self, progress: Progress) -> bool:
        """Copy what was parsed into ``progress``; True when a checkpoint was announced since last time."""
        with self._lock:
            for key in ("update", "total_updates", "loss", "updates_per_s", "epoch", "epochs", "last_event_mono"):
                value = getattr(self._latest, key)
                if value is not None:
                    setattr(progress, key, value)
            saved, self._saved = self._saved, 0
        return saved > 0
