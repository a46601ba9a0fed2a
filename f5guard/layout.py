"""Where every file lives in the work dir (fast, dies with the VM) and in home (persistent, Drive on Colab).

One place for paths, so that the CLI and the daemon can never disagree about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATE_NAME = "state.json"
DAEMON_LOG = "daemon.jsonl"


@dataclass(frozen=True)
class WorkLayout:
    """Runtime-local files: owned by the one daemon that holds ``daemon.lock``."""

    root: Path

    @property
    def lock(self) -> Path:
        return self.root / "daemon.lock"  # flock: one daemon per work dir

    @property
    def pidfile(self) -> Path:
        return self.root / "daemon.pid.json"

    @property
    def state(self) -> Path:
        return self.root / STATE_NAME

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def daemon_log(self) -> Path:
        return self.logs / DAEMON_LOG

    @property
    def daemon_stdio(self) -> Path:
        return self.logs / "daemon.out"  # stdout/stderr of the detached process: crashes before logging is up

    @property
    def requests(self) -> Path:
        return self.root / "requests"

    def stage_log(self, run: str, stage: str) -> Path:
        return self.logs / run / f"{stage}.log"

    def run_dir(self, run: str) -> Path:
        return self.root / "runs" / run

    def stage_dir(self, run: str, stage: str) -> Path:
        return self.run_dir(run) / stage

    def checkpoints(self, run: str) -> Path:
        return self.run_dir(run) / "ckpts"  # the trainer's own checkpoint dir (builtin mode's default)


@dataclass(frozen=True)
class HomeLayout:
    """Persistent files: written only by the daemon that holds the home lease with the current epoch."""

    root: Path

    @property
    def lease_dir(self) -> Path:
        return self.root / ".f5guard"

    @property
    def lease(self) -> Path:
        return self.lease_dir / "lease"  # SoftFileLease marker, renewed by heartbeat

    @property
    def epoch(self) -> Path:
        return self.lease_dir / "epoch.json"

    @property
    def state(self) -> Path:
        return self.lease_dir / STATE_NAME

    @property
    def logs(self) -> Path:
        return self.lease_dir / "logs"

    def run_dir(self, run: str) -> Path:
        return self.root / "runs" / run

    def checkpoints(self, run: str) -> Path:
        return self.run_dir(run) / "checkpoints"  # durable, versioned copies (checkpoints/durable.py names them)

    def export_dir(self, run: str) -> Path:
        return self.run_dir(run) / "export"  # the inference copy (EMA, fp16)
