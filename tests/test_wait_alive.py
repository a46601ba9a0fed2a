"""Long waits on the daemon's control thread (the final flush, the final inference copy) go in slices with a
watchdog ping between them; a wait that gives up early is a verdict, not a reason to wait on."""

from __future__ import annotations

import time

import pytest

from f5guard.training import driver as training


def test_slices_until_done_and_gives_up_on_a_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "WAIT_SLICE_S", 0.05)
    pings: list[str] = []
    monkeypatch.setattr(training.sdnotify, "notify", lambda message: pings.append(message) or True)

    calls: list[float] = []

    def third_time_lucky(timeout: float) -> bool:
        calls.append(timeout)
        time.sleep(timeout)
        return len(calls) == 3

    assert training._wait_alive(third_time_lucky, 5.0) is True
    assert len(calls) == 3 and pings == ["WATCHDOG=1", "WATCHDOG=1"]

    started = time.monotonic()
    assert training._wait_alive(lambda _timeout: False, 5.0) is False  # e.g. flush on a full home
    assert time.monotonic() - started < 2.5, "it did not wait out the 5 s"

    def never(timeout: float) -> bool:
        time.sleep(timeout)
        return False

    started = time.monotonic()
    assert training._wait_alive(never, 0.3) is False
    assert 0.25 <= time.monotonic() - started < 4.0
