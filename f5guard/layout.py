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
    def exit_note(self) -> Path:
        return self.root / "daemon.exit.json"  # how the last daemon life here ended (pidfile.ExitNote)

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

    def stage_logs(self) -> list[tuple[str, str, Path]]:
        """(run, stage, path) of every stage log on disk, sorted: the inverse of ``stage_log``."""
        if not self.logs.is_dir():
            return []
        runs = sorted(p for p in self.logs.iterdir() if p.is_dir())
        return [(run.name, log.stem, log) for run in runs for log in sorted(run.glob("*.log"))]

    def run_dir(self, run: str) -> Path:
        return self.root / "runs" / run

    def stage_dir(self, run: str, stage: str) -> Path:
        return self.run_dir(run) / stage

    def stage_items(self, run: str, stage: str) -> Path:
        return self.stage_dir(run, stage) / "items.jsonl"  # the stage's $F5GUARD_PROGRESS (itemprogress.py)

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
    def epoch(self) -> Path:
        return self.lease_dir / "epoch.json"  # written by f5guard before claims; read for the highest epoch

    @property
    def claims(self) -> Path:
        return self.lease_dir / "claims"  # one file per runtime (lease/claims.py)

    @property
    def state(self) -> Path:
        return self.lease_dir / STATE_NAME

    @property
    def logs(self) -> Path:
        return self.lease_dir / "logs"

    def runtime_logs(self, epoch: int, runtime: str) -> Path:
        """One folder per runtime: two runtimes never write one file (on Drive one would silently win)."""
        return self.logs / f"e{epoch:04d}-{runtime}"

    def run_dir(self, run: str) -> Path:
        return self.root / "runs" / run

    def checkpoints(self, run: str) -> Path:
        return self.run_dir(run) / "checkpoints"  # durable, versioned copies (checkpoints/durable.py names them)

    def progress_dir(self, run: str) -> Path:
        return self.run_dir(run) / "progress"  # the trainer's progress: segments per epoch and runtime (mirror.py)

    def export_dir(self, run: str) -> Path:
        return self.run_dir(run) / "export"  # the inference copy (EMA, fp16)

    def samples_dir(self, run: str) -> Path:
        return self.run_dir(run) / "samples"  # u<update>.wav + u<update>.json while training (sample_every)

    def speak_dir(self, run: str) -> Path:
        return self.run_dir(run) / "speak"  # `f5guard speak` without --out
