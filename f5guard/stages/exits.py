"""Why a child ended: exit code, signal, or an OOM kill proven by the cgroup's ``memory.events`` counter.

Exit 137 / SIGKILL alone does not prove OOM; the kernel's oom_kill counter does.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def oom_kill_count(pid: int | str = "self") -> int | None:
    """The cgroup v2 ``oom_kill`` counter for ``pid``'s cgroup, or None where it cannot be read."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            events = CGROUP_ROOT / line[3:].lstrip("/") / "memory.events"
            try:
                for event in events.read_text().splitlines():
                    name, _, value = event.partition(" ")
                    if name == "oom_kill":
                        return int(value)
            except (OSError, ValueError):
                return None
    return None


@dataclass(frozen=True)
class ExitInfo:
    """How an attempt ended; ``returncode`` follows Popen (negative = killed by that signal)."""

    returncode: int
    oom: bool = False
    stopped: bool = False  # f5guard itself asked it to stop

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def signal_name(self) -> str | None:
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"

    def describe(self) -> str:
        if self.oom:
            return f"killed by the kernel's OOM killer ({self.signal_name or f'exit code {self.returncode}'})"
        if self.signal_name:
            return f"killed by {self.signal_name}" + (" (stop requested)" if self.stopped else "")
        return f"exit code {self.returncode}" + (" (stop requested)" if self.stopped else "")


def classify(returncode: int, oom_before: int | None, oom_after: int | None, *, stopped: bool) -> ExitInfo:
    oom = oom_before is not None and oom_after is not None and oom_after > oom_before and returncode != 0
    return ExitInfo(returncode=returncode, oom=oom and not stopped, stopped=stopped)
