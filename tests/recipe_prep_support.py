"""Helpers for the recipe entry tests (setup, separate, prepare): run an entry as the daemon would, read JSON
answers from short torch subprocesses (torch stays out of the pytest process and its warnings filter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.f5_fixtures import train_env

ENTRY_TIMEOUT_S = 280


def run_entry(
    stage: str,
    *args: str | Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    python: str = sys.executable,
    timeout: float = ENTRY_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """``python -m f5guard.recipe.<stage> ARGS`` in a subprocess, offline, f5guard importable."""
    return subprocess.run([python, "-m", f"f5guard.recipe.{stage}", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=train_env(**(env or {})), cwd=cwd, check=False)  # fmt: skip


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def python_json(code: str, *args: str | Path, timeout: float = ENTRY_TIMEOUT_S) -> Any:
    """Run ``code`` (which prints one JSON document last) in a fresh interpreter; return the document."""
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=train_env(), check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(last_line(proc.stdout))
