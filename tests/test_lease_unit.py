"""The home lease in-process: epochs, takeover announcements, and a Drive hiccup that only degrades the hold."""

from __future__ import annotations

import errno
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from f5guard.errors import HomeUnreachable, LeaseHeld, LeaseLost
from f5guard.layout import HomeLayout
from f5guard.lease.hold import HomeLease
from f5guard.lease.info import current_holder, read_epoch
from f5guard.schema import LeaseSettings

FAST = LeaseSettings(duration_s=0.6, heartbeat_s=0.15, takeover_slack_s=0.2, epoch_poll_s=0.1)


def test_epochs_grow_and_holder_is_visible(tmp_path: Path) -> None:
    layout = HomeLayout(tmp_path)
    first = HomeLease(layout, FAST)
    assert first.acquire(takeover=False) == 1
    holder = current_holder(layout)
    assert holder is not None and holder.epoch == 1 and holder.pid_alive
    with pytest.raises(LeaseHeld, match="--takeover"):
        HomeLease(layout, FAST).acquire(takeover=False)
    first.release()
    second = HomeLease(layout, FAST)
    assert second.acquire(takeover=False) == 2
    first.epoch = 1  # what the first holder believes; epoch.json says 2 now
    with pytest.raises(LeaseLost):
        first.check()
    second.release()


def test_drive_hiccup_degrades_then_recovers(tmp_path: Path) -> None:
    """A refresh failure (Errno 107 on Drive) keeps the epoch; the lease is re-taken once home answers."""
    layout = HomeLayout(tmp_path)
    lease = HomeLease(layout, FAST)
    epoch = lease.acquire(takeover=False)
    lease._compromised(
        SimpleNamespace(
            reason="refresh-failed",  # what filelock's heartbeat reports
            error=OSError(errno.ENOTCONN, "Transport endpoint is not connected"),
        )
    )
    with pytest.raises(HomeUnreachable, match="Transport endpoint is not connected"):
        lease.check()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            lease.check()
            break
        except HomeUnreachable:
            time.sleep(0.1)
    else:
        pytest.fail("the lease was never re-taken")
    assert lease.degraded is None and lease.epoch == epoch
    record = read_epoch(layout.epoch)
    assert record is not None and record.epoch == epoch and record.token == lease.token
    lease.release()


def test_marker_taken_by_another_is_lost(tmp_path: Path) -> None:
    layout = HomeLayout(tmp_path)
    lease = HomeLease(layout, FAST)
    lease.acquire(takeover=False)
    lease._compromised(SimpleNamespace(reason="owner-changed", error=None))
    with pytest.raises(LeaseLost, match="owner-changed"):
        lease.check()
    lease.release()
