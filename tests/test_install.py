"""The install itself: f5guard's own filelock requirement survives f5-tts's cached-path cap (overrides.txt for
uv, pins.OVERRIDES for the setup stage's pip), and the F5-TTS entry points still import with it."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

from f5guard.recipe.pins import OVERRIDES, PINS, requirement
from f5guard.recipe.setup import own_overrides, parse_needs
from f5guard.recipe.stackplan import plan
from f5guard.recipe.stackprobe import Probe
from tests.conftest import FAST_LEASE

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


# ---------------------------------------------------------------------------------------------- two environments
def _uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not os.access(found, os.X_OK):
        pytest.skip("needs uv (`pip install uv`)")
    return found


def _checkout(tmp_path: Path) -> Path:
    """A copy of what a wheel is built from: building in the checkout itself leaves build/ behind."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "f5guard", src / "f5guard", ignore=shutil.ignore_patterns("__pycache__"))
    return src


def _clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH: each interpreter sees only what is installed in it (or what f5guard puts there)."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "F5GUARD_", "NOTIFY_SOCKET")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(drop)}, **extra}


def _run(argv: list[str], cwd: Path, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_clean_env(**extra))


@pytest.mark.train
@pytest.mark.slow
def test_plain_install_daemon_trains_in_another_python(tmp_path: Path, tiny_dataset: Path) -> None:
    """Route 2: `pip install f5guard` (no extras) into one venv gives a working CLI and daemon; the training runs
    in a second interpreter that has torch and f5_tts but not f5guard (nor the daemon's filelock pin), chosen by
    ``python = PATH``, and it checkpoints."""
    f5_tts = importlib.util.find_spec("f5_tts")
    if f5_tts is None or not f5_tts.submodule_search_locations:
        pytest.skip("needs f5_tts")
    uv = _uv()
    daemon_venv, stack_venv = tmp_path / "daemon-venv", tmp_path / "stack-venv"
    for venv in (daemon_venv, stack_venv):
        made = _run([uv, "venv", "-q", "--python", sys.executable, str(venv)], tmp_path)
        assert made.returncode == 0, made.stderr
    installed = _run([uv, "pip", "install", "-q", "--python", str(daemon_venv / "bin" / "python"),
                      str(_checkout(tmp_path))], tmp_path, timeout=600)  # fmt: skip
    if installed.returncode != 0 and any(sign in installed.stderr for sign in ("Failed to fetch", "dns error")):
        pytest.skip(f"the package index is not reachable: {installed.stderr.strip().splitlines()[-1]}")
    assert installed.returncode == 0, installed.stderr
    # The stack python: this environment's site-packages (torch, f5_tts) through a .pth line. A path added that
    # way is not scanned for .pth files itself, so f5guard's editable install there stays invisible.
    site = Path(next(iter(f5_tts.submodule_search_locations))).parent
    stack_site = next((stack_venv / "lib").glob("python3*/site-packages"))
    (stack_site / "stack.pth").write_text(f"{site}\n")
    stack_python = stack_venv / "bin" / "python"
    looks = "import importlib.util as u; print([u.find_spec(m) is not None for m in ('f5_tts', 'torch', 'f5guard')])"
    seen = _run([str(stack_python), "-c", looks], tmp_path)
    assert seen.stdout.strip() == "[True, True, False]", seen.stdout + seen.stderr

    f5guard = str(daemon_venv / "bin" / "f5guard")
    assert _run([f5guard, "--help"], tmp_path).returncode == 0
    assert _run([str(daemon_venv / "bin" / "python"), "-c", "import f5_tts"], tmp_path).returncode != 0
    root = tmp_path / "project"
    (root / "home").mkdir(parents=True)
    init = _run([f5guard, "init", "--home", "home"], root)
    assert init.returncode == 0, init.stderr
    dry = _run([f5guard, "start", "--dry-run"], root)
    assert dry.returncode == 0 and "would run" in dry.stdout, dry.stderr

    config = root / "train.toml"
    config.write_text(
        f'home = "{root}/home"\nwork = "{root}/work"\npython = "{stack_python}"\n' + textwrap.dedent(FAST_LEASE)
        + textwrap.dedent(f"""
        [[runs]]
        name = "voice"
        [[runs.stages]]
        name = "setup"
        type = "setup"
        need = ["torch", "f5_tts"]
        install = false
        [[runs.stages]]
        name = "train"
        type = "train"
        dataset = "{tiny_dataset}"
        model = "tiny"
        batch_size_per_gpu = 2
        batch_size_type = "sample"
        max_samples = 2
        epochs = 2
        num_warmup_updates = 2
        save_per_updates = 4
        last_per_updates = 2
        num_workers = 1
        threads = 1
        export_every = 4
        env = {{ TQDM_DISABLE = "1", HF_HUB_OFFLINE = "1", WANDB_MODE = "disabled" }}
        """)
    )  # fmt: skip
    dry = _run([f5guard, "start", "--dry-run", "--config", str(config)], root)
    assert f"python: {stack_python} (set in the config)" in dry.stdout, dry.stdout + dry.stderr
    try:
        started = _run([f5guard, "start", "--config", str(config)], root)
        assert started.returncode == 0, started.stdout + started.stderr
        deadline = time.monotonic() + 400
        state = None
        while time.monotonic() < deadline:
            status = _run([f5guard, "status", "--json", "--config", str(config)], root)
            run = json.loads(status.stdout)["runs"][0]
            state = run["state"]
            if state not in ("running", "pending", "waiting"):
                break
            time.sleep(1)
        log = (root / "work" / "logs" / "voice" / "train.log").read_text(errors="replace")
        assert state == "done", f"{state}\n{log[-3000:]}"
    finally:
        _run([f5guard, "stop", "--config", str(config), "--timeout", "30"], root)
    assert f"{stack_python} -m f5guard.trainer" in log
    report = json.loads((root / "work" / "setup" / "voice.json").read_text())
    assert report["python"]["executable"] == str(stack_python), "setup checked the stack python"
    # The setup stage in that Python (this environment) would leave f5-tts's filelock alone.
    asks = "from f5guard.recipe.pins import overrides_here; print(dict(overrides_here()))"
    folder = str(root / "work" / ".f5guard" / "pythonpath")
    overrides = _run([str(stack_python), "-c", asks], tmp_path, PYTHONPATH=folder, F5GUARD_PYTHONPATH=folder)
    assert overrides.stdout.strip() == "{}", overrides.stdout + overrides.stderr
    link = root / "work" / ".f5guard" / "pythonpath" / "f5guard"
    assert os.readlink(link) == str(next((daemon_venv / "lib").glob("python3*/site-packages")) / "f5guard")
    durable = sorted(p.name for p in (root / "home" / "runs" / "voice" / "checkpoints").iterdir())
    assert any(name.endswith(".pt") for name in durable), durable
    export = list((root / "home" / "runs" / "voice" / "export").glob("ema-fp16-u*.pt"))
    assert export, (root / "work" / "runs" / "voice" / "train" / "export.log").read_text(errors="replace")[-2000:]


def _compile(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """uv's resolution of ``args`` for this Python's version (nothing installed)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    proc = _run([_uv(), "pip", "compile", "-q", "--python-version", version, *args], tmp_path, timeout=300)
    if proc.returncode != 0 and any(sign in proc.stderr for sign in ("Failed to fetch", "dns error")):
        pytest.skip(f"the package index is not reachable: {proc.stderr.strip().splitlines()[-1]}")
    return proc


def _pinned(resolution: str, dist: str) -> str:
    return next(line.split("==")[1] for line in resolution.splitlines() if line.startswith(f"{dist}=="))


@pytest.mark.slow
def test_both_routes_resolve(tmp_path: Path) -> None:
    """Route 1 (one environment): f5guard[train,recipe] resolves only with overrides.txt, to filelock >= 4.2.1.
    Route 2: f5guard alone resolves (what `pip install f5guard` installs), and so does the stack python's pinned
    stack on its own, with the filelock 3.x cached-path asks for."""
    pyproject = str(ROOT / "pyproject.toml")
    one_env = _compile(tmp_path, "--overrides", str(ROOT / "overrides.txt"), pyproject, "--extra", "train",
                       "--extra", "recipe")  # fmt: skip
    assert one_env.returncode == 0, one_env.stderr
    assert Requirement("filelock>=4.2.1").specifier.contains(_pinned(one_env.stdout, "filelock"))
    assert _pinned(one_env.stdout, "f5-tts") == PINS["f5-tts"]
    refused = _compile(tmp_path, pyproject, "--extra", "train")
    assert refused.returncode != 0 and "unsatisfiable" in refused.stderr, "pip's route needs no uv any more?"
    daemon = _compile(tmp_path, pyproject)
    assert daemon.returncode == 0 and "torch" not in daemon.stdout and "f5-tts" not in daemon.stdout, daemon.stderr
    stack_in = tmp_path / "stack.in"
    stack_in.write_text("".join(f"{requirement(dist)}\n" for dist in PINS))
    stack = _compile(tmp_path, str(stack_in))
    assert stack.returncode == 0, stack.stderr
    assert not Requirement("filelock>=4").specifier.contains(_pinned(stack.stdout, "filelock"))
