"""The setup stage: versions recorded, missing/broken/mismatched modules named with the pip command that fixes
them, pinned installs that really land (in a throwaway venv), a torch other than the pin kept, the machine
stamp reused, and one pin table shared with pyproject. (The decision table alone: test_recipe_stackplan.py.)"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import tomllib

from f5guard.recipe.pins import PINS, TORCH_TOGETHER, canonical
from tests.recipe_prep_support import last_line, run_entry

ROOT = Path(__file__).resolve().parent.parent


def _cache(tmp_path: Path) -> dict[str, str]:
    """A machine stamp folder of the test's own: never this machine's real one (~/.cache/f5guard/setup)."""
    return {"XDG_CACHE_HOME": str(tmp_path / "cache (xdg)")}


def _fake_site(tmp_path: Path) -> Path:
    """A site dir with an importable package (good 1.0), one whose import raises (bad 1.0), one whose import
    kills the interpreter the way a broken C extension does (crash 1.0), no fourth."""
    site = tmp_path / "site (fake)"
    for name, body in (
        ("f5guard_good", "VALUE = 1\n"),
        ("f5guard_bad", "raise ImportError('libfoo.so: cannot open')\n"),
        (
            "f5guard_crash",
            "import os, sys\nsys.stderr.write('Fatal Python error: Segmentation fault\\n')\nos.abort()\n",
        ),
    ):
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(body)
        info = site / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 1.0\n")
    return site


def test_pins_match_pyproject() -> None:
    """pyproject's train and recipe extras pin exactly what setup installs."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    declared = dict(req.split("==") for req in extras["train"] + extras["recipe"])
    assert {canonical(k): v for k, v in declared.items()} == dict(PINS)
    assert set(TORCH_TOGETHER) <= set(PINS)


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    """Usage problems are exit 2 with one line: a lone torch pin, a need without a pin, a malformed pin."""
    out = tmp_path / "v.json"
    for args, words in (
        (["--pin", "torch==2.8.0"], "together"),
        (["--need", "f5guard_nothing"], "--pin f5guard-nothing==VERSION"),
        (["--pin", "six>=1"], "NAME==VERSION"),
    ):
        proc = run_entry("setup", "--out", out, "--no-install", *args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and words in proc.stderr
        assert proc.stderr.startswith("f5guard.recipe.setup: ")


def test_no_install_names_what_is_missing_and_the_fix(tmp_path: Path) -> None:
    """--no-install with a missing, a broken and a mismatched module: exit 1, one line with each and the exact
    pip commands (pinned install, forced reinstall for the broken one); a stale report is gone."""
    out = tmp_path / "état (vm)" / "versions.json"
    out.parent.mkdir()
    out.write_text("{}")
    site = _fake_site(tmp_path)
    proc = run_entry("setup", "--out", out, "--no-install",
                     "--need", "f5guard_good,f5guard_bad,f5guard_absent=f5guard-absent",
                     "--pin", "f5guard-good==2.0", "f5guard-bad==1.0", "f5guard-absent==3.1",
                     env={"PYTHONPATH": f"{ROOT}{os.pathsep}{site}", **_cache(tmp_path)})  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line, line
    assert line.startswith(f"f5guard.recipe.setup: check {sys.executable}: missing ")
    assert "f5guard_absent (not installed)" in line
    assert "f5guard_good (f5guard-good 1.0 installed, 2.0 wanted)" in line
    assert "f5guard_bad (import fails: ImportError: libfoo.so: cannot open)" in line
    assert (
        f"{sys.executable} -m pip install --disable-pip-version-check --no-input f5guard-good==2.0 "
        "f5guard-absent==3.1" in line
    )
    assert "--force-reinstall --no-deps f5guard-bad==1.0" in line
    assert "torch" not in line, "packages outside the recipe do not drag the torch trio in"
    assert not out.exists(), "a report from an earlier VM must not survive a failed check"
    assert not list((tmp_path / "cache (xdg)").glob("f5guard/setup/*.json")), "a failed check stamps nothing"


def test_an_import_that_kills_the_interpreter_is_named_and_the_rest_still_probed(tmp_path: Path) -> None:
    """One probe interpreter for everything: when an import aborts it, that module is the broken one (with the
    interpreter's last words) and a fresh interpreter probes the modules after it."""
    site = _fake_site(tmp_path)
    proc = run_entry("setup", "--out", tmp_path / "v.json", "--no-install",
                     "--need", "f5guard_crash,f5guard_good,f5guard_bad",
                     "--pin", "f5guard-crash==1.0", "f5guard-good==1.0", "f5guard-bad==1.0",
                     env={"PYTHONPATH": f"{ROOT}{os.pathsep}{site}", **_cache(tmp_path)})  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = last_line(proc.stderr)
    assert "f5guard_crash (import fails: the interpreter died: Fatal Python error: Segmentation fault)" in line
    assert "f5guard_bad (import fails: ImportError: libfoo.so: cannot open)" in line, "probed after the crash"
    assert "f5guard_good" not in line.split("; fix:")[0]
    assert "f5guard_good 1.0 want 1.0 ok" in " ".join(proc.stdout.split())


def test_the_machine_stamp_is_reused_until_a_version_changes(tmp_path: Path) -> None:
    """A passed check is stamped; the next setup with the same key reuses it without probing; a package at
    another version (a pip install in between) makes it check again; an unusable stamp folder costs the reuse,
    not the check, and says so."""
    site = _fake_site(tmp_path)
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{site}", **_cache(tmp_path)}
    out = tmp_path / "v.json"

    def setup(pin: str = "1.0", **extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
        proc = run_entry("setup", "--out", out, "--no-install", "--need", "f5guard_good",
                         "--pin", f"f5guard-good=={pin}", env={**env, **extra})  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc, json.loads(out.read_text())

    _, report = setup()
    assert report["reused"] is None and report["probe_interpreters"] == 1
    second, report = setup()
    assert report["reused"] is not None and report["probe_interpreters"] == 0
    assert "stack verified on this machine" in second.stdout
    metadata = site / "f5guard_good-1.0.dist-info" / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 1.0", "Version: 1.1"))
    _, report = setup("1.1")
    assert report["reused"] is None and report["packages"]["f5guard_good"]["version"] == "1.1"  # type: ignore[index]
    blocked = tmp_path / "not a folder"
    blocked.write_text("")
    proc, report = setup("1.1", XDG_CACHE_HOME=str(blocked))
    assert "unusable" in proc.stdout and report["stamp_error"] and report["reused"] is None


@pytest.mark.train
@pytest.mark.slow
def test_versions_recorded_once_per_machine(tmp_path: Path) -> None:
    """The real stack here (torch at the pin), checked without installing in ONE probe interpreter: every
    version, torchaudio.load and the GPU. A second run (another speaker's setup) reuses the machine stamp
    without probing; --recheck probes again."""
    if importlib.util.find_spec("f5_tts") is None or importlib.util.find_spec("demucs") is None:
        pytest.skip("needs the [train] and [recipe] extras installed")
    out, again = tmp_path / "versions.json", tmp_path / "other run.json"
    proc = run_entry("setup", "--out", out, "--no-install", env=_cache(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    versions = {p["dist"]: p["version"].split("+")[0] for p in report["packages"].values()}
    assert versions == dict(PINS)
    assert all(p["error"] is None for p in report["packages"].values())
    assert report["torch"]["decision"] == "pinned" and report["probe_interpreters"] == 1
    assert report["torchaudio_load"]["ok"] is True
    assert set(report["gpu"]) >= {"cuda", "devices"}
    assert report["installed"] == [] and report["python"]["executable"] == sys.executable
    assert report["reused"] is None and "stack ok" in last_line(proc.stdout)
    stamps = list((tmp_path / "cache (xdg)" / "f5guard" / "setup").glob("*.json"))
    assert len(stamps) == 1 and json.loads(stamps[0].read_text())["key"]["executable"] == sys.executable

    second = run_entry("setup", "--out", again, "--no-install", env=_cache(tmp_path))
    assert second.returncode == 0, second.stdout + second.stderr
    reused = json.loads(again.read_text())
    assert reused["reused"]["stamp"] == str(stamps[0]) and reused["probe_interpreters"] == 0
    assert reused["packages"] == report["packages"] and reused["installed"] == []
    assert "stack verified on this machine at" in second.stdout and "reused the machine stamp" in second.stdout

    checked = run_entry("setup", "--out", again, "--no-install", "--recheck", env=_cache(tmp_path))
    assert checked.returncode == 0 and json.loads(again.read_text())["probe_interpreters"] == 1


def _other_torch_wheel() -> Path | None:
    """A torch wheel for this Python that is not the pin, from pip's find-links (installable offline)."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for folder in filter(None, os.environ.get("PIP_FIND_LINKS", "").split()):
        for wheel in (
            sorted(Path(folder).glob(f"torch-*-{tag}-{tag}-*linux*x86_64.whl")) if Path(folder).is_dir() else []
        ):
            if not wheel.name.startswith(f"torch-{PINS['torch']}"):
                return wheel
    return None


@pytest.mark.slow
def test_a_working_torch_other_than_the_pin_is_kept(tmp_path: Path) -> None:
    """A throwaway venv with another torch release (as Colab ships): setup keeps it instead of reinstalling the
    pin; where torchaudio is needed and none exists for that torch, it says the pins are the fix; f5guard is not
    installed in that Python, so no filelock re-assert."""
    wheel, uv = _other_torch_wheel(), shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if wheel is None or not os.access(uv, os.X_OK):
        pytest.skip("needs uv and a torch wheel other than the pin in PIP_FIND_LINKS")
    env_dir = tmp_path / "venv (other torch)"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(env_dir)], check=True, timeout=120)
    python = str(env_dir / "bin" / "python")
    subprocess.run([uv, "pip", "install", "-q", "--offline", "--python", python, str(wheel)], check=True,
                   timeout=600)  # fmt: skip
    env = {"PYTHONPATH": str(ROOT), **_cache(tmp_path)}
    out = tmp_path / "versions.json"
    proc = run_entry("setup", "--out", out, "--no-install", "--need", "torch", python=python, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    version = wheel.name.split("-")[1]
    assert report["packages"]["torch"]["version"] == version and report["torch"]["decision"] == "kept"
    assert f"torch {version} works (the pin is {PINS['torch']}): kept" in proc.stdout
    assert report["installed"] == [] and report["probe_interpreters"] == 1

    audio = run_entry("setup", "--out", out, "--no-install", "--need", "torch,torchaudio", python=python, env=env)
    assert audio.returncode == 1
    line = last_line(audio.stderr)
    assert "torchaudio (not installed)" in line
    assert f"torch==2.9.1 torchaudio=={PINS['torchaudio']} torchcodec=={PINS['torchcodec']}" in line, line
    assert "no torchaudio exists for torch" in audio.stdout or "newer than" in audio.stdout, audio.stdout
    overrides = subprocess.run([python, "-c", "from f5guard.recipe.setup import own_overrides; print(own_overrides())"],
                               capture_output=True, text=True, env=dict(os.environ, **env), check=True)  # fmt: skip
    assert overrides.stdout.strip() == "{}"


@pytest.mark.slow
def test_pinned_install_into_a_throwaway_venv(tmp_path: Path) -> None:
    """A missing pinned package really gets installed by pip; a second run installs nothing; a changed pin
    reinstalls at the new version (the mismatch path)."""
    env_dir = tmp_path / "venv (throwaway)"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    out = tmp_path / "versions.json"
    env = {"PYTHONPATH": str(ROOT), **_cache(tmp_path)}

    first = run_entry("setup", "--out", out, "--need", "six", "--pin", "six==1.16.0", python=python, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    report = json.loads(out.read_text())
    assert report["packages"]["six"]["version"] == "1.16.0"
    assert [c["command"][-1] for c in report["installed"]] == ["six==1.16.0"]
    assert report["gpu"] is None and report["torchaudio_load"] is None
    version = subprocess.run([python, "-c", "import six; print(six.__version__)"], capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
    assert version == "1.16.0"

    again = run_entry("setup", "--out", out, "--need", "six", "--pin", "six==1.16.0", python=python, env=env)
    assert again.returncode == 0 and json.loads(out.read_text())["installed"] == []
    assert json.loads(out.read_text())["reused"]["installed_then"] == report["installed"], "the stamp's run"

    bumped = run_entry("setup", "--out", out, "--need", "six", "--pin", "six==1.17.0", python=python, env=env)
    assert bumped.returncode == 0, bumped.stdout[-3000:] + bumped.stderr
    assert json.loads(out.read_text())["packages"]["six"]["version"] == "1.17.0"


def test_an_install_that_cannot_reach_an_index_says_what_to_do_offline(tmp_path: Path) -> None:
    """pip cannot reach its index: setup's one line says the install needs the network and what to do offline."""
    closed = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": "", "PIP_RETRIES": "0",
              "PIP_TIMEOUT": "2", "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1"}  # fmt: skip
    proc = run_entry("setup", "--out", tmp_path / "v.json", "--need", "f5guard_absent=f5guard-absent-dist",
                     "--pin", "f5guard-absent-dist==1.0", env={**closed, **_cache(tmp_path)},
                     timeout=120)  # fmt: skip
    assert proc.returncode == 1
    line = last_line(proc.stderr)
    assert line.startswith(f"f5guard.recipe.setup: pip install {sys.executable}: exit 1 after "), line
    assert line.endswith(
        "(pip installs from the network: if this VM is offline, install the pinned versions into this Python "
        "beforehand, or set install = false in the setup stage to only check)"
    ), line
    assert not (tmp_path / "v.json").exists()
