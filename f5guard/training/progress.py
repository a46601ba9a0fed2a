"""Training progress as the daemon sees it: the built-in trainer's typed events (f5guard/trainevents.py), or
tqdm lines of a user's own F5-TTS command turned into the same events, folded straight into the run's
TrainingRecord: one shape from the trainer to status."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from f5guard.state import TrainingRecord
from f5guard.trainevents import Checkpoint, Event, Start, Update, finite, read_events

_TQDM_EPOCH = re.compile(r"Epoch (\d+)/(\d+)")
_TQDM_BAR = re.compile(r"\|\s*(\d+)/(\d+) \[")
_TQDM_RATE = re.compile(r"([\d.]+)update/s")
_TQDM_LOSS = re.compile(r"loss=([-\d.eE+naif]+)")
_TQDM_UPDATE = re.compile(r"update=(\d+)")
_SAVED_LAST = re.compile(r"Saved last checkpoint at update (\d+)")


def fold(record: TrainingRecord, event: Event) -> None:
    """What one event changes in the record status shows (checkpoints and exits are the driver's business)."""
    if isinstance(event, Start):
        record.update = event.start_update
        record.total_updates = event.total_updates or record.total_updates
        record.setup = event.setup
        record.processes = event.processes
        record.updates_per_s = None  # a rate from before the restart says nothing about this attempt
    elif isinstance(event, Update):
        record.update = event.update
        record.loss = event.loss
        record.epoch = event.epoch if event.epoch is not None else record.epoch
        record.updates_per_s = event.updates_per_s or record.updates_per_s


class EventReader:
    """Reads the built-in trainer's progress file incrementally: this attempt's events only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def poll(self) -> list[Event]:
        if not self.path.exists():
            return []
        events, self.offset = read_events(self.path, self.offset)
        return events


class TqdmParser:
    """Turns F5-TTS's tqdm bar (``update=`` is the global counter) into the trainer's events: a ``start`` when
    the bar's total is first known (or corrected upwards), ``update`` per redraw, ``checkpoint`` per "Saved
    last checkpoint" line. Fed from the output pump thread, taken on the control thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._update = 0
        self._total = 0

    def feed(self, line: str) -> None:
        with self._lock:
            if m := _TQDM_UPDATE.search(line):
                # tqdm redraws on update(1) before set_postfix(update=...): a line's postfix may lag its bar
                # by one, so both the counter and the derived total only ever move up.
                self._update = max(int(m.group(1)), self._update)
                epoch = None
                if (bar := _TQDM_BAR.search(line)) and (ep := _TQDM_EPOCH.search(line)):
                    done, per_epoch = int(bar.group(1)), int(bar.group(2))
                    epoch, epochs = int(ep.group(1)), int(ep.group(2))
                    total = self._update - done + per_epoch * (epochs - epoch + 1)
                    if total > self._total:  # first known, or corrected upwards: what the bar says it runs to
                        self._total = total
                        self._events.append(Start(start_update=self._update, total_updates=total))
                rate = _TQDM_RATE.search(line)
                loss = _TQDM_LOSS.search(line)
                self._events.append(Update(
                    update=self._update, loss=_number(loss.group(1)) if loss else None, epoch=epoch,
                    updates_per_s=float(rate.group(1)) if rate else None,
                ))  # fmt: skip
            if m := _SAVED_LAST.search(line):
                self._events.append(Checkpoint(file="model_last.pt", update=int(m.group(1)), last=True))

    def take(self) -> list[Event]:
        """The events parsed since the last call."""
        with self._lock:
            events, self._events = self._events, []
        return events


def _number(text: str) -> float | None:
    try:
        return finite(float(text))
    except ValueError:
        return None
