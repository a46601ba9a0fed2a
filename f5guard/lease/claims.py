"""Claims: every runtime announces itself in a file of its own, ``home/.f5guard/claims/<runtime>.json``.

Drive is eventually consistent: another VM sees a write late, files overtake each other, and concurrent writes
of one file end with one silent winner. So no file here is ever written by two runtimes: a claim names its
runtime (host, boot id, pid namespace, pid and its start time), its epoch and whether it was released; its
heartbeat is a separate marker beside it, renewed by filelock's SoftFileLease. Which claim wins is a total
order, (epoch, runtime), that every runtime computes alike from what it sees. Stdlib only: ``status`` reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from f5guard.fsutil import atomic_write_json, make_dirs, read_json
from f5guard.layout import HomeLayout
from f5guard.machine import boot_id, hostname, pid_namespace, process_start_ticks
from f5guard.readback import epoch_of

CLAIM_SUFFIX = ".json"
BEAT_SUFFIX = ".beat"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class RuntimeId:
    """One daemon's life on one machine; unique across VMs, reboots and reused pids."""

    host: str
    boot_id: str
    pidns: str
    pid: int
    pid_started: int  # clock ticks since boot, from /proc/<pid>/stat

    @classmethod
    def here(cls) -> RuntimeId:
        pid = os.getpid()
        return cls(hostname(), boot_id(), pid_namespace(), pid, process_start_ticks(pid) or 0)

    @property
    def name(self) -> str:
        host = _SAFE.sub("_", self.host)[:40] or "host"
        return f"{host}-{self.boot_id[:8]}-{self.pid}-{self.pid_started}"

    @property
    def tag(self) -> str:
        """Eight hex digits: short enough for file names (checkpoints, state copies), unique in practice."""
        return hashlib.sha256(f"{self.name}|{self.boot_id}|{self.pidns}".encode()).hexdigest()[:8]

    def same_machine(self, other: RuntimeId) -> bool:
        """Pids mean the same process only in one kernel boot and one pid namespace."""
        return self.boot_id == other.boot_id and self.pidns == other.pidns

    def alive_here(self) -> bool:
        """Only meaningful on the same machine: the pid lives and was started when the claim says."""
        return process_start_ticks(self.pid) == self.pid_started


@dataclass(frozen=True)
class Claim:
    """What a runtime says of itself on home."""

    runtime: RuntimeId
    epoch: int
    work: str
    since: float  # the writer's wall clock: shown to people, never used to judge liveness
    released: bool = False

    @property
    def key(self) -> tuple[int, str]:
        """The total order: the higher epoch wins; two runtimes on one epoch are ordered by name."""
        return (self.epoch, self.runtime.name)

    def describe(self) -> str:
        return f"host {self.runtime.host}, pid {self.runtime.pid}, epoch {self.epoch}"


def claim_path(layout: HomeLayout, runtime: RuntimeId) -> Path:
    return layout.claims / f"{runtime.name}{CLAIM_SUFFIX}"


def beat_path(layout: HomeLayout, runtime: RuntimeId) -> Path:
    return layout.claims / f"{runtime.name}{BEAT_SUFFIX}"


def write_claim(layout: HomeLayout, claim: Claim) -> None:
    make_dirs(layout.claims)
    atomic_write_json(claim_path(layout, claim.runtime), asdict(claim))


def read_claim(path: Path) -> Claim | None:
    """A claim file, or None when it is unreadable, half-uploaded or not a claim (it is then ignored)."""
    try:
        data = read_json(path)
        runtime = RuntimeId(**data["runtime"])
        claim = Claim(
            runtime=runtime,
            epoch=int(data["epoch"]),
            work=str(data["work"]),
            since=float(data["since"]),
            released=bool(data.get("released", False)),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None
    # An epoch of 1e308 or "3" would become every later runtime's epoch floor: such a file is no claim.
    if epoch_of(data["epoch"]) is None or not _well_typed(runtime):
        return None
    return claim


def _well_typed(runtime: RuntimeId) -> bool:
    texts = (runtime.host, runtime.boot_id, runtime.pidns)
    return all(type(t) is str for t in texts) and all(type(n) is int for n in (runtime.pid, runtime.pid_started))


@dataclass
class Sighting:
    """A peer's claim as this runtime sees it, judged on this runtime's own clock."""

    claim: Claim
    live: bool
    heartbeat_age_s: float | None  # from the files' mtimes: an estimate across machines, for people


@dataclass
class ClaimWatch:
    """Judges peers' liveness on our own monotonic clock: a peer on another machine is live while its claim or
    heartbeat keeps changing within ``duration_s``; one on this machine while its process lives."""

    layout: HomeLayout
    me: RuntimeId
    duration_s: float
    include_me: bool = False  # a reader (status) sees every claim; a holder only its peers
    _seen: dict[str, tuple[tuple[int, ...], float]] = field(default_factory=dict)  # name -> (stat key, changed)

    def look(self) -> list[Sighting]:
        """The claims visible in our view of home (our own left out unless ``include_me``), lowest key first."""
        try:
            names = sorted(p for p in os.listdir(self.layout.claims) if p.endswith(CLAIM_SUFFIX))
        except OSError:
            return []
        sightings: list[Sighting] = []
        now_mono, now_wall = time.monotonic(), time.time()
        for name in names:
            claim = read_claim(self.layout.claims / name)
            if claim is None or (claim.runtime == self.me and not self.include_me):
                continue
            key, mtime = self._stat_key(claim.runtime)
            age = max(0.0, now_wall - mtime) if mtime else None
            previous = self._seen.get(claim.runtime.name)
            if previous is None:
                # First sighting: its mtime is the best guess of when it last changed (clocks agree roughly).
                changed = now_mono - (age if age is not None else self.duration_s)
            else:
                changed = now_mono if key != previous[0] else previous[1]
            self._seen[claim.runtime.name] = (key, changed)
            sightings.append(Sighting(claim, self._live(claim, now_mono - changed), age))
        return sorted(sightings, key=lambda s: s.claim.key)

    def _live(self, claim: Claim, unchanged_s: float) -> bool:
        if claim.released:
            return False
        if claim.runtime.same_machine(self.me):
            return claim.runtime.alive_here()  # a dead pid on this machine frees its claim at once
        return unchanged_s < self.duration_s

    def _stat_key(self, runtime: RuntimeId) -> tuple[tuple[int, ...], float]:
        key: list[int] = []
        newest = 0.0
        for path in (claim_path(self.layout, runtime), beat_path(self.layout, runtime)):
            with contextlib.suppress(OSError):
                st = path.stat()
                key += [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
                newest = max(newest, st.st_mtime)
        return tuple(key), newest
