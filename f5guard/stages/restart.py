"""Restart decisions for long-running stages: immediate first restart, capped exponential backoff, reset after a
stable uptime, a budget per time window, then FATAL with the reason (never supervisord's silent loop).

The budget counts only attempts that made no progress: Colab's RAM OOM killer may end a trainer every ten
minutes, and as long as each attempt leaves a newer durable checkpoint, restarting it is the right thing."""

from __future__ import annotations

import collections
from dataclasses import dataclass

from f5guard.schema import RestartPolicy


@dataclass(frozen=True)
class Verdict:
    restart: bool
    delay_s: float
    reason: str


class RestartTracker:
    """Remembers recent restarts of one stage; monotonic times only."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.consecutive = 0
        self._recent: collections.deque[float] = collections.deque()

    def on_failure(self, uptime_s: float, now: float, *, progressed: bool = False) -> Verdict:
        """``progressed``: the attempt made progress that survives it (a newer durable checkpoint)."""
        p = self.policy
        while self._recent and now - self._recent[0] > p.window_s:
            self._recent.popleft()
        if progressed:
            self.consecutive = 1  # a fresh failure: restart at once, and back off only if the next one is stuck
            return Verdict(True, 0.0, "restart after an attempt that made progress (not counted in the budget)")
        if len(self._recent) >= p.budget:
            return Verdict(
                False,
                0.0,
                f"restart budget exhausted: {len(self._recent)} restarts in the last "
                f"{p.window_s:g}s (restart.budget = {p.budget})",
            )
        if uptime_s >= p.stable_after_s:
            self.consecutive = 0  # it ran well for a while: this is a fresh failure, not a loop
        delay = (
            0.0
            if self.consecutive == 0
            else min(p.backoff_max_s, p.backoff_initial_s * p.backoff_factor ** min(self.consecutive - 1, 64))
        )
        self.consecutive += 1
        self._recent.append(now)
        return Verdict(True, delay, f"restart {len(self._recent)} of {p.budget} in {p.window_s:g}s, after {delay:g}s")
