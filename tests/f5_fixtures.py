"""Shared fixtures for tests that run real F5-TTS training (``pytest_plugins = ["tests.f5_fixtures"]``).

Everything runs the real ``python -m f5guard.trainer`` in a subprocess, offline, on a tiny model, so third-party
warnings stay out of the pytest process and signals hit a real process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from f5guard.trainer.spec import TrainSpec

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "WANDB_SILENT": "true",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
    "TQDM_DISABLE": "1",
}

# A few updates per epoch, a save every 2 updates: the first checkpoint lands ~1 s after the imports.
TINY_TRAINING: dict[str, Any] = {
    "model": "tiny",
    "learning_rate": 1e-4,
    "batch_size_per_gpu": 2,
    "batch_size_type": "sample",
    "max_samples": 2,
    "epochs": 2,
    "num_warmup_updates": 2,
    "save_per_updates": 4,
    "last_per_updates": 2,
    "num_workers": 1,
    "threads": 1,
}


def train_env(**extra: str) -> dict[str, str]:
    """The environment for a training subprocess: offline, unbuffered, f5guard importable."""
    env = dict(os.environ, **OFFLINE_ENV, **extra)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny prepared dataset (8 clips through F5-TTS's prepare_csv_wavs), shared by the session."""
    pytest.importorskip("torch")
    pytest.importorskip("f5_tts")
    root = tmp_path_factory.mktemp("tinydata")
    result = subprocess.run(
        [sys.executable, "-m", "f5guard.trainer.tinydata", str(root), "--n", "8"],
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data_dir = root / "data"
    assert (data_dir / "raw.arrow").is_file()
    return data_dir


class TrainRun:
    """One f5guard.trainer subprocess in its own session (process group), with its progress file."""

    def __init__(self, spec_path: Path, progress_path: Path, env: dict[str, str]) -> None:
        self.spec_path = spec_path
        self.progress_path = progress_path
        self.log_path = spec_path.with_suffix(f".{int(time.time() * 1000)}.log")
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "f5guard.trainer", "--spec", str(spec_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=spec_path.parent,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def events(self) -> list[dict[str, Any]]:
        """This process's complete events so far."""
        if not self.progress_path.exists():
            return []
        out = []
        for line in self.progress_path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("pid") == self.pid:
                out.append(record)
        return out

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 120) -> dict[str, Any]:
        """The first event matching ``predicate``; fails if the process exits or time runs out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if predicate(event):
                    return event
            if self.proc.poll() is not None:
                pytest.fail(f"trainer exited rc={self.proc.returncode} before the event; log:\n{self.tail()}")
            time.sleep(0.05)
        pytest.fail(f"no matching event within {timeout} s; log:\n{self.tail()}")

    def signal_group(self, signum: int) -> None:
        os.killpg(self.pid, signum)

    def wait(self, timeout: float = 180) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL the whole group (trainer + DataLoader workers) and reap the trainer."""
        if self.proc.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
        self.wait()

    def tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]


@pytest.fixture
def start_training(tmp_path: Path, tiny_dataset: Path) -> Iterator[Callable[..., TrainRun]]:
    """start_training(**spec_overrides, env=None) -> TrainRun; every run is killed at teardown."""
    runs: list[TrainRun] = []

    def start(env: dict[str, str] | None = None, **overrides: Any) -> TrainRun:
        fields: dict[str, Any] = {
            "dataset_dir": str(tiny_dataset),
            "checkpoint_dir": str(tmp_path / "ckpts"),
            "progress_path": str(tmp_path / "progress.jsonl"),
            **TINY_TRAINING,
            **overrides,
        }
        spec_path = tmp_path / "spec.json"
        TrainSpec.from_dict(fields).to_json(spec_path)
        run = TrainRun(spec_path, Path(fields["progress_path"]), train_env(**(env or {})))
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.proc.poll() is None:
            run.kill()
