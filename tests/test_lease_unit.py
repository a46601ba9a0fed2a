"""The home lease in-process: claims, epochs above everything visible, the total order, the settle gate, and a
Drive hiccup that only degrades the hold."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from f5guard.errors import HomeUnreachable, LeaseHeld, LeaseLost
from f5guard.layout import HomeLayout
from f5guard.lease.claims import Claim, RuntimeId, Sighting, claim_path, read_claim, write_claim
from f5guard.lease.hold import HomeLease
from f5guard.lease.info import claims_now, highest_epoch_seen
from f5guard.schema import LeaseSettings

FAST = LeaseSettings(duration_s=0.6, heartbeat_s=0.15, takeover_slack_s=0.2, epoch_poll_s=0.1, settle_s=0.3)


def current_owner(layout: HomeLayout, duration_s: float) -> Sighting | None:
    live = [s for s in claims_now(layout, duration_s) if s.live]
    return live[-1] if live else None


def other_vm(name: str, pid: int = 4242) -> RuntimeId:
    """A runtime on another machine: another boot id, so its pid cannot be checked from here."""
    return RuntimeId(host=name, boot_id=f"boot-{name}", pidns="pid:[1]", pid=pid, pid_started=1)


def test_epochs_grow_and_owner_is_visible(tmp_path: Path) -> None:
    layout = HomeLayout(tmp_path)
    first = HomeLease(layout, FAST, work="/w1")
    assert first.acquire(takeover=False) == 1
    owner = current_owner(layout, FAST.duration_s)
    assert owner is not None and owner.claim.epoch == 1 and owner.claim.runtime.alive_here()
    second_vm = HomeLease(layout, FAST, work="/w2", me=other_vm("vm2"))
    with pytest.raises(LeaseHeld, match="--takeover"):
        second_vm.acquire(takeover=False)
    first.release()
    assert current_owner(layout, FAST.duration_s) is None, "a released claim owns nothing"
    assert second_vm.acquire(takeover=False) == 2
    second_vm.release()


def test_new_epoch_is_above_every_epoch_seen(tmp_path: Path) -> None:
    """State copies and checkpoint names count too (the daemon passes them as the floor), and a corrupt
    epoch.json never lowers it."""
    layout = HomeLayout(tmp_path)
    layout.lease_dir.mkdir(parents=True)
    layout.epoch.write_text('{"epoch": 1e400}')
    write_claim(layout, Claim(other_vm("old"), epoch=7, work="/w", since=0.0, released=True))
    assert highest_epoch_seen(layout) == 7
    lease = HomeLease(layout, FAST, work="/w")
    assert lease.acquire(takeover=False, floor_epoch=9) == 10
    lease.release()


def test_dead_pid_on_this_machine_frees_its_claim_at_once(tmp_path: Path) -> None:
    """Same boot id and pid namespace: the pid is checked, not the heartbeat (a kill -9 frees the home)."""
    layout = HomeLayout(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    here = RuntimeId.here()
    dead = dataclasses.replace(here, pid=proc.pid, pid_started=12345)
    write_claim(layout, Claim(dead, epoch=3, work="/old", since=time.time()))
    t0 = time.monotonic()
    lease = HomeLease(layout, FAST, work="/w")
    assert lease.acquire(takeover=False) == 4
    assert time.monotonic() - t0 < 1.0
    lease.release()


def test_a_claim_above_ours_makes_us_lose(tmp_path: Path) -> None:
    """Two runtimes that claimed at once with the same epoch: the total order picks one, the other stops."""
    layout = HomeLayout(tmp_path)
    lease = HomeLease(layout, FAST, work="/w")
    lease.acquire(takeover=False)
    rival = Claim(other_vm("zzz-vm"), epoch=lease.epoch, work="/w2", since=time.time())
    assert rival.key > (lease.epoch, lease.me.name)
    write_claim(layout, rival)
    with pytest.raises(LeaseLost, match="same epoch"):
        lease.check()
    write_claim(layout, dataclasses.replace(rival, epoch=lease.epoch + 1))
    with pytest.raises(LeaseLost, match="took over"):
        lease.check()
    lease.release()
    released = read_claim(claim_path(layout, lease.me))
    assert released is not None and released.released


def test_claim_below_ours_keeps_training_waiting_until_gone(tmp_path: Path) -> None:
    """The settle gate: first our own settle period, then lower live claims must go (or be given up on)."""
    layout = HomeLayout(tmp_path)
    lease = HomeLease(layout, FAST, work="/w")
    lease.acquire(takeover=False)
    assert "settling" in (lease.training_gate() or "")
    lower = Claim(other_vm("aaa-vm"), epoch=lease.epoch, work="/w0", since=time.time())
    assert lower.key < (lease.epoch, lease.me.name)
    write_claim(layout, lower)
    time.sleep(FAST.settle_s)
    lease.check()  # below us: not a reason to stop
    assert "to stop its training" in (lease.training_gate() or "")
    write_claim(layout, dataclasses.replace(lower, released=True))
    lease.check()
    assert lease.training_gate() is None
    lease.release()


def test_a_silent_claim_on_another_machine_goes_stale_on_our_clock(tmp_path: Path) -> None:
    layout = HomeLayout(tmp_path)
    frozen = Claim(other_vm("frozen"), epoch=1, work="/w0", since=time.time())
    write_claim(layout, frozen)
    lease = HomeLease(layout, FAST, work="/w")
    with pytest.raises(LeaseHeld, match="host frozen"):
        lease.acquire(takeover=False)
    t0 = time.monotonic()
    assert lease.acquire(takeover=True) == 2
    waited = time.monotonic() - t0
    assert FAST.duration_s * 0.8 <= waited < FAST.duration_s + FAST.takeover_slack_s + 1.0
    lease.release()


def test_drive_hiccup_degrades_then_recovers(tmp_path: Path) -> None:
    """A refresh failure (Errno 107 on Drive) keeps the epoch; the hold is renewed once home answers."""
    layout = HomeLayout(tmp_path)
    lease = HomeLease(layout, FAST, work="/w")
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
        pytest.fail("the hold was never renewed")
    assert lease.degraded is None and lease.epoch == epoch
    claim = read_claim(claim_path(layout, lease.me))
    assert claim is not None and claim.epoch == epoch and not claim.released
    lease.release()


def test_marker_taken_by_another_is_lost(tmp_path: Path) -> None:
    layout = HomeLayout(tmp_path)
    lease = HomeLease(layout, FAST, work="/w")
    lease.acquire(takeover=False)
    lease._compromised(SimpleNamespace(reason="owner-changed", error=None))
    with pytest.raises(LeaseLost, match="owner-changed"):
        lease.check()
    lease.release()


def test_claims_are_files_of_their_own(tmp_path: Path) -> None:
    """No file on home is written by two runtimes: each claim and heartbeat is named by its runtime."""
    layout = HomeLayout(tmp_path)
    a = HomeLease(layout, FAST, work="/a")
    a.acquire(takeover=False)
    a.release()
    b = HomeLease(layout, FAST, work="/b", me=other_vm("vm2"))
    b.acquire(takeover=False)
    names = sorted(os.listdir(layout.claims))
    assert f"{a.me.name}.json" in names and f"{b.me.name}.json" in names and f"{b.me.name}.beat" in names
    assert json.loads((layout.claims / f"{a.me.name}.json").read_text())["released"] is True
    b.release()


def test_released_claims_are_pruned_to_the_newest_few(tmp_path: Path) -> None:
    """Every daemon life leaves a claim; released ones beyond a few are removed, live ones never."""
    layout = HomeLayout(tmp_path)
    for i in range(8):
        write_claim(layout, Claim(other_vm(f"old{i}"), epoch=i + 1, work="/w", since=0.0, released=True))
    live = Claim(other_vm("alive"), epoch=2, work="/w", since=time.time())
    write_claim(layout, live)
    lease = HomeLease(layout, FAST, work="/w")
    assert lease.acquire(takeover=True) == 9
    names = sorted(n for n in os.listdir(layout.claims) if n.endswith(".json"))
    assert f"{live.runtime.name}.json" in names, "a live claim is never removed"
    kept = [read_claim(layout.claims / n) for n in names]
    released = sorted(c.epoch for c in kept if c is not None and c.released)
    assert released == [6, 7, 8]
    lease.release()


def test_hostile_epochs_are_no_floor_and_the_ceiling_is_said(tmp_path: Path) -> None:
    """Epochs of 1e308, 2**63, "3", Infinity or true on home are no claims (one of 1e308 made every later start
    crash, its own claims carrying it on); a plausible one at the ceiling is refused with one line."""
    from f5guard.errors import F5guardError
    from f5guard.readback import MAX_EPOCH

    layout = HomeLayout(tmp_path)
    layout.claims.mkdir(parents=True)
    for n, epoch in enumerate(("1e308", str(2**63), '"3"', "Infinity", "true", "-1", "1.5")):
        runtime = dataclasses.asdict(other_vm(f"h{n}"))
        (layout.claims / f"h{n}.json").write_text(
            f'{{"runtime": {json.dumps(runtime)}, "epoch": {epoch}, "work": "/w", "since": 1.0}}'
        )
        assert read_claim(layout.claims / f"h{n}.json") is None, epoch
    assert highest_epoch_seen(layout) == 0
    lease = HomeLease(layout, FAST, work="/w")
    assert lease.acquire(takeover=False) == 1
    lease.release()
    write_claim(layout, Claim(other_vm("top"), epoch=MAX_EPOCH, work="/w", since=0.0, released=True))
    with pytest.raises(F5guardError, match="corrupt epoch"):
        HomeLease(layout, FAST, work="/w").acquire(takeover=False)
