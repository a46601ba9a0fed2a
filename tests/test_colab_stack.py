"""Colab's 2026 stack: Python 3.12 with torch 2.11, torchaudio 2.11 and torchcodec 0.11 preinstalled, and uv.
On a fresh Python 3.12 venv holding that trio, the notebook's install cell (``uv tool install``) gives a working
``f5guard``, and the setup stage the daemon runs installs f5-tts into that Python around Colab's torch: torch and
torchaudio are kept as they are (no CUDA wheels downloaded again), torchcodec stays paired with them.

The stand-in for Colab's ``+cu128`` wheels is PyPI's torch 2.11.0 (a CUDA 13 build, which runs on the CPU here):
the CPU-only ``+cpu`` wheels are published only on PyTorch's own index, which this machine cannot reach. PyPI's
torchcodec 0.11.0 is built against CUDA 13's NPP (``libnppicc.so.13``), absent here, so it does not load: like a
torchcodec whose libraries a VM lacks, setup replaces it with its pair 0.11.1 (a CPU build) alone, ``--no-deps``,
and a second check keeps the working trio untouched.
Duration: about 6 minutes with warm uv/pip caches (5 of them pip installing f5-tts's dependencies).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import FAST_LEASE
from tests.test_install import _checkout, _run, _uv

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "f5guard_colab.ipynb"
COLAB = {"torch": "2.11.0", "torchaudio": "2.11.0", "torchcodec": "0.11.0"}  # googlecolab/backend-info, 2026
PAIRED = {**COLAB, "torchcodec": "0.11.1"}  # what loads here (see above)
_OFFLINE = ("Failed to fetch", "dns error", "No matching distribution", "Could not find a version")


def python312() -> str | None:
    """A real CPython 3.12 on this machine (PATH, then pyenv's versions); ``uv python install`` downloads from
    GitHub, which this machine cannot reach."""
    root = Path(os.environ.get("PYENV_ROOT", "~/.pyenv")).expanduser()
    candidates = ["python3.12", "/usr/bin/python3.12", *map(str, sorted(root.glob("versions/3.12*/bin/python3.12")))]
    for candidate in candidates:
        try:
            proc = subprocess.run([candidate, "-c", "import sys, venv, ensurepip; print(sys.version_info[:2])"],
                                  capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        except OSError:
            continue
        if proc.returncode == 0 and proc.stdout.strip() == "(3, 12)":
            return candidate
    return None


def install_cell() -> list[str]:
    """The notebook's install command, read from its cell: ``sh("uv", "tool", "install", ..., PACKAGE)``."""
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    for cell in cells[:-1]:  # the last is `!f5guard watch`
        for call in (n for n in ast.walk(ast.parse("".join(cell["source"]))) if isinstance(n, ast.Call)):
            if isinstance(call.func, ast.Name) and call.func.id == "sh":
                argv = [a.value if isinstance(a, ast.Constant) else f"<{ast.unparse(a)}>" for a in call.args]
                if argv[:1] == ["uv"]:
                    return argv
    raise AssertionError("no `uv` command in the notebook")


def _versions(python: Path, cwd: Path) -> dict[str, str]:
    code = f"import importlib.metadata as m, json; print(json.dumps({{d: m.version(d) for d in {list(COLAB)!r}}}))"
    proc = _run([str(python), "-c", code], cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_the_install_cell_and_setup_keep_colabs_torch_on_python_3_12(tmp_path: Path) -> None:
    base = python312()
    if base is None:
        pytest.skip("needs a CPython 3.12 (python3.12 on PATH or under pyenv)")
    uv = _uv()
    colab = tmp_path / "colab-python"  # Colab's own Python: pip in it, the trio preinstalled
    made = _run([base, "-m", "venv", str(colab)], tmp_path)
    assert made.returncode == 0, made.stderr
    python = colab / "bin" / "python"
    trio = [f"{d}=={v}" for d, v in COLAB.items()]
    got = _run([uv, "pip", "install", "-q", "--python", str(python), *trio], tmp_path, timeout=1200)
    if got.returncode != 0 and any(sign in got.stderr for sign in _OFFLINE):
        pytest.skip(f"torch 2.11 cannot be fetched here: {got.stderr.strip().splitlines()[-1]}")
    assert got.returncode == 0, got.stderr
    assert _versions(python, tmp_path) == COLAB

    # The install cell, as the notebook runs it (uv tool install PACKAGE), with PACKAGE this checkout.
    argv = install_cell()
    assert argv[:3] == ["uv", "tool", "install"] and argv[-1] == "<PACKAGE>", argv
    tools, bin_dir = tmp_path / "uv-tools", tmp_path / "bin"
    path = os.pathsep.join((str(colab / "bin"), str(bin_dir), os.environ["PATH"]))  # Colab's python3 first
    cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}  # setup's machine stamp: never this machine's own
    env = {"UV_TOOL_DIR": str(tools), "UV_TOOL_BIN_DIR": str(bin_dir), "UV_PYTHON": str(python), "PATH": path}
    tool = _run([uv, *argv[1:-1], str(_checkout(tmp_path))], tmp_path, timeout=900, **env)
    assert tool.returncode == 0, tool.stderr
    f5guard = str(bin_dir / "f5guard")
    version = _run([f5guard, "--version"], tmp_path, PATH=path)
    assert version.returncode == 0 and "f5guard" in version.stdout, version.stderr
    tool_python = _run([str(next(tools.glob("f5guard/bin/python"))), "-c", "import sys; print(sys.version_info[:2])"],
                       tmp_path)  # fmt: skip
    assert tool_python.stdout.strip() == "(3, 12)", "the tool venv is Colab's Python's version"

    # The setup stage, run by the daemon in Colab's Python (python = "auto": the first python3 on PATH with
    # torch), installs f5-tts around the trio.
    root = tmp_path / "project"
    (root / "home").mkdir(parents=True)
    config = root / "f5guard.toml"
    config.write_text(f'home = "{root}/home"\nwork = "{root}/work"\n' + textwrap.dedent(FAST_LEASE) + textwrap.dedent("""
        [[runs]]
        name = "voice"
        [[runs.stages]]
        name = "setup"
        type = "setup"
        need = ["torch", "torchaudio", "f5_tts"]
        """))  # fmt: skip
    dry = _run([f5guard, "start", "--dry-run", "--config", str(config)], root, PATH=path, **cache)
    assert f"python: {colab / 'bin' / 'python3'} (auto: the first python3 on PATH with torch" in dry.stdout, dry.stdout
    try:
        started = _run([f5guard, "start", "--config", str(config)], root, PATH=path, **cache)
        assert started.returncode == 0, started.stdout + started.stderr
        deadline, state = time.monotonic() + 1500, None
        while time.monotonic() < deadline:
            status = _run([f5guard, "status", "--json", "--config", str(config)], root, PATH=path, **cache)
            state = json.loads(status.stdout)["runs"][0]["state"]
            if state not in ("running", "pending"):
                break
            time.sleep(2)
    finally:
        _run([f5guard, "stop", "--config", str(config), "--timeout", "60"], root, PATH=path, **cache)
    log = (root / "work" / "logs" / "voice" / "setup.log").read_text(errors="replace")
    assert state == "done", f"{state}\n{log[-4000:]}"
    report = json.loads((root / "work" / "setup" / "voice.json").read_text())
    assert report["python"]["executable"] == str(colab / "bin" / "python3")
    assert report["torch"]["decision"] == "kept", report["torch"]
    assert "torch 2.11.0 works (the pin is" in log and "kept, the rest matched to it" in log
    commands = [c["command"][c["command"].index("--no-input") + 1 :] for c in report["installed"]]
    assert ["--no-deps", "torchcodec==0.11.1"] in commands, commands  # the broken torchcodec: its pair, alone
    f5 = next(c for c in commands if "f5-tts==1.1.22" in c)
    assert {"torch==2.11.0", "torchaudio==2.11.0", "torchcodec==0.11.1"} <= set(f5), f5  # held: nothing replaced
    assert len(commands) == 2, commands
    assert _versions(python, tmp_path) == PAIRED, "torch and torchaudio exactly as Colab had them"
    assert {m: p["version"] for m, p in report["packages"].items() if m in COLAB} == PAIRED
    assert report["packages"]["f5_tts"]["version"] == "1.1.22" and report["torchaudio_load"]["ok"]

    # Checked again (as on the next VM, without the machine stamp): the working trio is kept, nothing installed.
    again = tmp_path / "again.json"
    link = str(root / "work" / ".f5guard" / "pythonpath")
    recheck = _run([str(colab / "bin" / "python3"), "-m", "f5guard.recipe.setup", "--out", str(again), "--need",
                    "torch,torchaudio,f5_tts", "--recheck"], root, timeout=600, PYTHONPATH=link, **cache)  # fmt: skip
    assert recheck.returncode == 0, recheck.stdout[-3000:] + recheck.stderr
    second = json.loads(again.read_text())
    assert second["installed"] == [] and second["torch"]["decision"] == "kept", second["torch"]
    assert _versions(python, tmp_path) == PAIRED
