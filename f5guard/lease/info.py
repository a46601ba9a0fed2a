"""What anyone can read about who owns a home without holding it: the claims, their heartbeats, the epochs.

Stdlib only, so ``status`` stays fast; ``hold.py`` holds the lease itself.
"""

from __future__ import annotations

import contextlib
import os

from f5guard.fsutil import read_json
from f5guard.layout import HomeLayout
from f5guard.lease.claims import CLAIM_SUFFIX, ClaimWatch, RuntimeId, Sighting, read_claim
from f5guard.readback import epoch_of


def legacy_epoch(layout: HomeLayout) -> int:
    """The epoch an older f5guard kept in ``epoch.json``: only a floor, and only when it is an integer >= 0 (a
    corrupt file must never make us reuse a lower epoch: the other sources still count)."""
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        return epoch_of(read_json(layout.epoch).get("epoch")) or 0
    return 0


def highest_epoch_seen(layout: HomeLayout) -> int:
    """The highest epoch any claim (live or not) or the legacy epoch file shows in this view of home."""
    best = legacy_epoch(layout)
    with contextlib.suppress(OSError):
        for name in os.listdir(layout.claims):
            if name.endswith(CLAIM_SUFFIX):
                claim = read_claim(layout.claims / name)
                if claim is not None:
                    best = max(best, claim.epoch)
    return best


def claims_now(layout: HomeLayout, duration_s: float) -> list[Sighting]:
    """Every claim as a one-shot reader sees it (liveness from the heartbeat's age, or the pid on this machine)."""
    return ClaimWatch(layout, RuntimeId.here(), duration_s, include_me=True).look()
