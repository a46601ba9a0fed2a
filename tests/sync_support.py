"""Helpers for the sync tests: real torch.save checkpoints, small tmpfs homes, a recording log.

torch is imported once per test module in a helper process (imports take seconds; a save takes milliseconds),
so the tests themselves and the code under test stay torch-free.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_SERVER = r"""
import json, sys
import torch
for line in sys.stdin:
    req = json.loads(line)
    weights = torch.full((req["nbytes"],), req["update"] % 251, dtype=torch.uint8)
    dtype = getattr(torch, req.get("dtype", "float32"))
    ema = torch.full((16,), float(req["update"]), dtype=dtype)
    if req.get("value") is not None:  # one weight set apart: "nan", "inf", "-inf" or the format's largest finite
        ema[7] = torch.finfo(dtype).max if req["value"] == "max" else float(req["value"])
    torch.save({
        "model_state_dict": {"w": weights},
        "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0]}]},
        "ema_model_state_dict": {"w": ema},
        "scheduler_state_dict": {"last_epoch": req["update"]},
        "update": req["update"],
    }, req["path"])  # in place, exactly as F5-TTS's accelerator.save does
    print("ok", flush=True)
"""


class CheckpointMaker:
    """A python process with torch that writes F5-TTS-shaped checkpoints (model/optimizer/EMA/update)."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)  # fmt: skip
        self._lock = threading.Lock()

    def make(self, path: Path, update: int, nbytes: int = 4096, *, value: str | None = None,
             dtype: str = "float32") -> Path:  # fmt: skip
        """Write (or rewrite in place) a checkpoint at ``update`` whose model weights take ``nbytes``; ``value``
        puts one EMA weight (of ``dtype``) at "nan", "inf", "-inf" or "max" (the largest finite one)."""
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        request = {"path": str(path), "update": update, "nbytes": nbytes, "value": value, "dtype": dtype}
        with self._lock:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            answer = self._proc.stdout.readline().strip()
        assert answer == "ok", f"checkpoint maker failed writing {path}"
        return path

    def close(self) -> None:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)
        self._proc.stdout.close()


@pytest.fixture(scope="module")
def maker() -> Iterator[CheckpointMaker]:
    if importlib.util.find_spec("torch") is None:  # find, not import: this process stays torch-free
        pytest.skip("torch is not installed (the [train] extra): cannot write real checkpoints")
    made = CheckpointMaker()
    yield made
    made.close()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, int], Path]]:
    """Mount small tmpfs filesystems (a full or filling "Drive"); skip where mounting is not permitted."""
    mounted: list[Path] = []

    def mount(name: str, size_mb: int) -> Path:
        where = tmp_path / name
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to act as a full home (needs root): {proc.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


class Recorder:
    """A ``log(event, **fields)`` that keeps every call (called from the sync thread)."""

    def __init__(self, on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.times: list[float] = []  # time.monotonic() of each event
        self._on_event = on_event

    def __call__(self, event: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(event, fields)
        self.events.append((event, fields))
        self.times.append(time.monotonic())

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def home_names(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir()) if home.exists() else []
