"""The install itself: f5guard's own filelock requirement survives f5-tts's cached-path cap (overrides.txt for
uv, pins.OVERRIDES for the setup stage's pip), and the F5-TTS entry points still import with it."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

from f5guard.recipe.pins import OVERRIDES, PINS
from f5guard.recipe.setup import own_overrides, parse_needs
from f5guard.recipe.stackplan import plan
from f5guard.recipe.stackprobe import Probe

ROOT = Path(__file__).resolve().parent.parent


def _override_lines() -> list[str]:
    lines = (ROOT / "overrides.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_one_override_everywhere() -> None:
    """overrides.txt (uv), pins.OVERRIDES (setup's pip) and pyproject's core dependency say the same thing."""
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    overridden = {req for reqs in OVERRIDES.values() for req in reqs}
    assert set(_override_lines()) == overridden
    assert overridden <= {str(Requirement(r)) for r in core}


def test_this_environment_honours_the_override() -> None:
    """A plain `pip install f5-tts` after f5guard downgrades filelock to 3.x; the project's install must not."""
    for line in _override_lines():
        req = Requirement(line)
        installed = importlib.metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} installed, {req} needed"


def test_setup_reasserts_the_override_after_f5_tts() -> None:
    """The setup stage's pip commands: the pinned install, then filelock>=4.2.1 again, because f5guard (whose
    lease needs it) is installed in this interpreter; not after other packages."""
    overrides = own_overrides()
    assert overrides == dict(OVERRIDES), "f5guard's distribution here requires filelock: the re-assert stays"
    pins = {**PINS, "six": "1.16.0"}
    probe = Probe(versions={"torch": "2.9.1", "torchaudio": "2.9.1", "torchcodec": "0.8.1"})
    commands = plan(parse_needs("torch,f5_tts", pins), pins, probe, overrides).commands
    assert len(commands) == 2
    assert "f5-tts==1.1.22" in commands[0] and "torch==2.9.1" in commands[0]
    assert commands[1][-1] == "filelock>=4.2.1" and commands[1][:4] == [sys.executable, "-m", "pip", "install"]
    only_six = plan(parse_needs("six", pins), pins, Probe(), overrides).commands
    assert [c[-1] for c in only_six] == ["six==1.16.0"]


@pytest.mark.train
def test_f5_tts_entry_points_import_with_the_override() -> None:
    """cached_path, f5-tts's finetune CLI and its inference API import beside filelock >= 4.2.1."""
    pytest.importorskip("f5_tts")
    code = (
        "import filelock, cached_path, f5_tts.train.finetune_cli, f5_tts.api, f5_tts.model;print(filelock.__version__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Requirement("filelock>=4.2.1").specifier.contains(proc.stdout.strip().splitlines()[-1])
