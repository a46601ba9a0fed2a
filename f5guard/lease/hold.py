"""The home lease: one supervisor owns a home at a time, across machines that share it (Drive).

A filelock SoftFileLease marker, renewed by its heartbeat thread, says who holds it; a peer takes it only after
seeing the marker unchanged for the whole lease duration on its OWN clock. Drive has no compare-and-swap and
filelock does not fence, so every hold also gets an epoch (highest seen + 1) in ``epoch.json``: a holder that
sees a higher epoch than its own stops, and files of a lower epoch never win over a higher one.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict

from filelock import SoftFileLease, Timeout

from f5guard.errors import HomeUnreachable, LeaseHeld, LeaseLost
from f5guard.fsutil import atomic_write_json
from f5guard.layout import HomeLayout
from f5guard.lease.info import EpochRecord, Holder, current_holder, looks_live, read_epoch
from f5guard.machine import hostname
from f5guard.schema import LeaseSettings

_POLL_S = 0.25


class HomeLease:
    """This daemon's hold on a home: acquire (or take over), check for a higher epoch, release."""

    def __init__(self, layout: HomeLayout, settings: LeaseSettings) -> None:
        self.layout = layout
        self.settings = settings
        self.epoch = 0
        self._lost: str | None = None
        self.degraded: str | None = None  # home unreachable: training goes on, home writes wait
        self._lock = threading.Lock()
        layout.lease_dir.mkdir(parents=True, exist_ok=True)
        self._lease = SoftFileLease(
            str(layout.lease),
            lease_duration=settings.duration_s,
            heartbeat_interval=settings.heartbeat_interval_s,
            on_compromise=self._compromised,
            poll_interval=_POLL_S,
            is_singleton=False,
        )

    @property
    def token(self) -> str | None:
        return self._lease.token

    def acquire(self, *, takeover: bool, on_wait: Callable[[Holder], None] | None = None) -> int:
        """Take the lease; returns the new epoch. Raises LeaseHeld if a live holder keeps it."""
        holder = current_holder(self.layout)
        previous = read_epoch(self.layout.epoch)
        epoch = (previous.epoch if previous else 0) + 1
        if holder is not None and not takeover and looks_live(holder, self.settings):
            raise LeaseHeld(
                f"home {self.layout.root} is owned by {holder.describe()}; "
                "run `f5guard start --takeover` to take it over"
            )
        if takeover:
            # Announce first: a live old holder sees the higher epoch, stops its trainer and releases.
            self._write_epoch(epoch, token=None, takeover=True)
        if holder is not None and on_wait is not None:
            on_wait(holder)
        wait_s = self.settings.duration_s + self.settings.takeover_slack_s + 2 * _POLL_S
        try:
            self._lease.acquire(timeout=wait_s)
        except Timeout:
            if not takeover:
                again = current_holder(self.layout)
                raise LeaseHeld(
                    f"home {self.layout.root} is still owned by "
                    f"{again.describe() if again else 'another supervisor'}; "
                    "run `f5guard start --takeover` to take it over"
                ) from None
            self._break_marker()
            self._lease.acquire(timeout=wait_s)
        self.epoch = epoch
        self._write_epoch(epoch, token=self._lease.token, takeover=takeover)
        return epoch

    def _break_marker(self) -> None:
        """A holder that ignores the higher epoch loses its marker: its heartbeat then reports the loss."""
        aside = self.layout.lease.with_name(f"lease.broken-{int(time.time())}-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.layout.lease, aside)

    def _write_epoch(self, epoch: int, *, token: str | None, takeover: bool) -> None:
        record = EpochRecord(
            epoch=epoch, host=hostname(), pid=os.getpid(), token=token, since=time.time(), takeover=takeover
        )
        atomic_write_json(self.layout.epoch, asdict(record))

    def _compromised(self, compromise: object) -> None:
        """From the heartbeat thread. Errors renewing (a Drive hiccup: Errno 107, EIO) only degrade the hold:
        the trainer keeps going and the lease is re-taken when home answers again. A marker that another
        supervisor replaced or removed means we lost it."""
        reason = getattr(compromise, "reason", str(compromise))
        with self._lock:
            if reason == "refresh-failed":
                self.degraded = f"cannot renew the lease on home ({getattr(compromise, 'error', None)})"
            else:
                self._lost = f"lease marker lost ({reason})"

    def check(self) -> None:
        """Raise LeaseLost when a higher epoch exists or the marker was taken; cheap enough for every poll."""
        with self._lock:
            lost, degraded = self._lost, self.degraded
        record = read_epoch(self.layout.epoch)  # None while home is unreachable: nothing to conclude
        if record is not None and record.epoch > self.epoch:
            raise LeaseLost(
                f"host {record.host} pid {record.pid} took over home {self.layout.root} "
                f"(epoch {record.epoch} > ours {self.epoch})"
            )
        if lost is not None:
            raise LeaseLost(f"{lost} at {self.layout.lease}")
        if degraded is not None:
            self._try_reacquire()
            raise HomeUnreachable(degraded)

    def _try_reacquire(self) -> None:
        """One non-blocking attempt; filelock remembers how long our stale marker has been unchanged, so
        repeated attempts succeed once a full lease duration passed, unless someone else took it first."""
        with contextlib.suppress(Exception):
            self._lease.release(force=True)
        try:
            self._lease.acquire(timeout=0)
        except (Timeout, OSError):
            return
        try:
            self._write_epoch(self.epoch, token=self._lease.token, takeover=False)
        except OSError:
            self._lease.release(force=True)
            return
        with self._lock:
            self.degraded = None

    def release(self) -> None:
        with contextlib.suppress(Exception):
            self._lease.release(force=True)
