"""This runtime's hold on a home: a claim of its own, a heartbeat, a settle period, and a total order.

Home is Google Drive: writes reach other VMs late and out of order, and a file two VMs write ends with one
silent winner. So a runtime writes only its own claim (``claims.py``), picks an epoch above every epoch it can
see, and trains only after its claim has been on home for ``settle_s`` with no claim above it in the order
(epoch, runtime). A holder that sees a live claim above its own stops its children and exits (``LeaseLost``).
Two runtimes that start before either sees the other therefore train together for at most the time Drive
takes to show one claim to the other (docs/reliability.md). filelock's SoftFileLease renews the heartbeat
marker beside our claim and tells us when someone removed or replaced it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable

from filelock import SoftFileLease, Timeout

from f5guard.errors import F5guardError, HomeUnreachable, LeaseHeld, LeaseLost
from f5guard.fsutil import make_dirs
from f5guard.layout import HomeLayout
from f5guard.lease.claims import Claim, ClaimWatch, RuntimeId, Sighting, beat_path, claim_path, write_claim
from f5guard.lease.info import highest_epoch_seen
from f5guard.readback import MAX_EPOCH
from f5guard.schema import LeaseSettings

_POLL_S = 0.25
KEEP_RELEASED = 3  # released claims kept for people to read (and their epochs; state and checkpoints keep them too)


class HomeLease:
    """Acquire (or take over), check for a claim above ours, gate training on the settle period, release."""

    def __init__(self, layout: HomeLayout, settings: LeaseSettings, *, work: str, me: RuntimeId | None = None) -> None:
        self.layout = layout
        self.settings = settings
        self.work = work
        self.me = me or RuntimeId.here()
        self.epoch = 0
        self.claim: Claim | None = None
        self.claimed_at = 0.0  # monotonic: when our claim was written
        self.degraded: str | None = None  # home unreachable: training goes on, home writes wait
        self.peers: list[Sighting] = []  # the latest look at the other claims (status shows them)
        self._lost: str | None = None
        self._lock = threading.Lock()
        self._last_look = time.monotonic()
        self._stalled_at = -float("inf")  # when we last woke from a freeze (a long gap between looks)
        self.watch = ClaimWatch(layout, self.me, settings.duration_s)
        self._beat = SoftFileLease(
            str(beat_path(layout, self.me)),
            lease_duration=settings.duration_s,
            heartbeat_interval=settings.heartbeat_interval_s,
            on_compromise=self._compromised,
            poll_interval=_POLL_S,
            is_singleton=False,
        )

    def live_peers(self) -> list[Sighting]:
        return [s for s in self.peers if s.live]

    def acquire(self, *, takeover: bool, floor_epoch: int = 0, on_wait: Callable[[Claim], None] | None = None) -> int:
        """Write our claim with an epoch above everything visible; returns it. Without ``takeover`` a live
        claim of another runtime refuses at once (LeaseHeld); with it, we announce ourselves and wait until the
        old owner released its claim or went silent for a whole lease duration on our own clock."""
        make_dirs(self.layout.claims)
        self.peers = self.watch.look()
        live = self.live_peers()
        if live and not takeover:
            owner = live[-1]
            raise LeaseHeld(
                f"home {self.layout.root} is owned by {_describe(owner)}; "
                "run `f5guard start --takeover` to take it over"
            )
        self.epoch = max(floor_epoch, highest_epoch_seen(self.layout)) + 1
        if self.epoch > MAX_EPOCH:  # every reader would take our own claim for a corrupt one (readback.py)
            raise F5guardError(
                f"home {self.layout.root} already counts {self.epoch - 1} epochs (one per takeover): a claim, "
                "state copy or checkpoint name there carries a corrupt epoch; remove it"
            )
        self.claim = Claim(runtime=self.me, epoch=self.epoch, work=self.work, since=time.time())
        write_claim(self.layout, self.claim)
        self.claimed_at = time.monotonic()
        try:
            self._beat.acquire(timeout=self.settings.duration_s)
        except Timeout as err:  # our marker's name is ours alone: only a leftover of this very runtime blocks it
            raise LeaseHeld(f"cannot create the heartbeat marker {beat_path(self.layout, self.me)}") from err
        if live and on_wait is not None:
            on_wait(live[-1].claim)
        self._wait_for_old_owners(live)
        self._prune_released()
        return self.epoch

    def _prune_released(self) -> None:
        """A claim file is left by every daemon life: remove finished ones (released, or of a dead pid on this
        machine: their runtime writes them no more) beyond the newest few, so every look at home stays short."""
        released = [
            s.claim for s in self.peers if s.claim.released or (not s.live and s.claim.runtime.same_machine(self.me))
        ]
        for claim in sorted(released, key=lambda c: c.key)[:-KEEP_RELEASED]:
            for path in (claim_path(self.layout, claim.runtime), beat_path(self.layout, claim.runtime)):
                with contextlib.suppress(OSError):
                    path.unlink()

    def _wait_for_old_owners(self, live: list[Sighting]) -> None:
        """A takeover: the old owner sees our higher epoch, stops its trainer and releases; a frozen one is
        taken from once its claim has not changed for the lease duration plus slack, on our clock."""
        if not live:
            return
        deadline = time.monotonic() + self.settings.duration_s + self.settings.takeover_slack_s + 2 * _POLL_S
        while time.monotonic() < deadline:
            self.peers = self.watch.look()
            if not any(s.live and s.claim.key < self._key for s in self.peers):
                return
            time.sleep(_POLL_S)

    @property
    def _key(self) -> tuple[int, str]:
        return (self.epoch, self.me.name)

    def training_gate(self) -> str | None:
        """Why training must not start yet, or None. Our claim must have been on home for ``settle_s`` (so a
        runtime that started at the same time has had the time to show itself), and every live claim below
        ours must be gone, or have had a whole takeover wait to see ours (it stops when it does)."""
        waited = time.monotonic() - self.claimed_at
        if waited < self.settings.settle_s:
            return (
                f"settling: training starts once no other runtime has shown up on home for "
                f"{self.settings.settle_s:g} s ({self.settings.settle_s - waited:.0f} s left)"
            )
        lower = [s for s in self.live_peers() if s.claim.key < self._key]
        if lower and waited < self.settings.duration_s + self.settings.takeover_slack_s:
            return f"waiting for {_describe(lower[-1])} to stop its training (it has seen our higher epoch)"
        return None

    def may_delete(self) -> bool:
        """Deleting on home (retention) waits ``settle_s`` after we woke from a freeze: a runtime that took over
        meanwhile may not have reached our view of home yet (Chubby's lock-delay, on our side)."""
        with self._lock:
            return time.monotonic() - self._stalled_at >= self.settings.settle_s

    def _compromised(self, compromise: object) -> None:
        """From the heartbeat thread. Errors renewing (a Drive hiccup: Errno 107, EIO) only degrade the hold;
        a heartbeat marker that someone else replaced or removed means we lost it."""
        reason = getattr(compromise, "reason", str(compromise))
        with self._lock:
            if reason == "refresh-failed":
                self.degraded = f"cannot renew the lease on home ({getattr(compromise, 'error', None)})"
            else:
                self._lost = f"heartbeat marker lost ({reason})"

    def check(self) -> None:
        """Raise LeaseLost when a live claim above ours exists or our marker was taken; cheap enough for every
        control pass (a directory listing and a few small reads)."""
        now = time.monotonic()
        with self._lock:
            lost, degraded = self._lost, self.degraded
            if now - self._last_look > self.settings.duration_s:
                self._stalled_at = now  # frozen (SIGSTOP, a suspended VM): our view of home may be stale
            self._last_look = now
        self.peers = self.watch.look()
        above = [s for s in self.peers if s.live and s.claim.key > self._key]
        if above:
            winner = above[-1].claim
            raise LeaseLost(
                f"host {winner.runtime.host} pid {winner.runtime.pid} took over home {self.layout.root} "
                f"(epoch {winner.epoch} > ours {self.epoch})"
                if winner.epoch > self.epoch
                else f"host {winner.runtime.host} pid {winner.runtime.pid} claimed home {self.layout.root} at the "
                f"same time with the same epoch {self.epoch} and wins the tie (runtime order)"
            )
        if lost is not None:
            raise LeaseLost(f"{lost} at {beat_path(self.layout, self.me)}")
        if degraded is not None:
            self._try_reacquire()
            raise HomeUnreachable(degraded)

    def _try_reacquire(self) -> None:
        """One non-blocking attempt to renew after a Drive hiccup; our claim is rewritten as it was."""
        with contextlib.suppress(Exception):
            self._beat.release(force=True)
        try:
            self._beat.acquire(timeout=0)
        except (Timeout, OSError):
            return
        try:
            if self.claim is not None:
                write_claim(self.layout, self.claim)
        except OSError:
            self._beat.release(force=True)
            return
        with self._lock:
            self.degraded = None

    def release(self) -> None:
        """Say on home that we are gone (a peer waiting for us goes on at once), then stop the heartbeat."""
        if self.claim is not None:
            with contextlib.suppress(OSError):
                write_claim(self.layout, dataclasses.replace(self.claim, released=True))
        with contextlib.suppress(Exception):
            self._beat.release(force=True)


def _describe(sighting: Sighting) -> str:
    age = "unknown" if sighting.heartbeat_age_s is None else f"{sighting.heartbeat_age_s:.0f}s ago"
    return f"{sighting.claim.describe()}, last heartbeat {age}"
