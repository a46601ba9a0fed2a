"""The stack python: the interpreter that runs the training stack (torch, f5_tts, Whisper), which need not be
the daemon's own.

The daemon needs filelock >= 4.2.1 for its lease, while f5-tts's cached-path caps filelock below 4: one
environment holds both only with an installer override. So the daemon may live in an environment of its own
(``pip install f5guard``, ``uv tool install f5guard``) while the stages run in another Python, on Colab the
machine's own, with Colab's torch. That Python imports f5guard's trainer and recipe entries from a folder holding
only a link to the package (``work/.f5guard/pythonpath/f5guard``), put first on PYTHONPATH: never the daemon
environment's site-packages, whose filelock is the very thing f5-tts must not see.

``python = "auto"`` (the default) picks, without importing anything: this interpreter when it can find
``f5_tts``; else the first other ``python3`` on PATH that has ``f5_tts``; else the first that has ``torch``
(the setup stage installs f5-tts there, beside the machine's torch); else this interpreter.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from f5guard.errors import ConfigError
from f5guard.layout import WorkLayout
from f5guard.schema import StackPython, check_path, expand, placeholder_values

AUTO = "auto"
SEPARATE_ENV = "F5GUARD_PYTHONPATH"  # set (to the folder) in a stage run by a stack python that is not the daemon's
_MARK = "F5GUARD-PY "  # the probes' answer line
PROBE_TIMEOUT_S = 20.0  # a cold interpreter on a slow disk; a hung one must not hang `f5guard status`
# find_spec, never import: importing torch costs seconds, and only whether it is there matters.
_PROBE = (
    "import importlib.util as u, json\n"
    "print('F5GUARD-PY ' + json.dumps({m: u.find_spec(m) is not None for m in ('f5_tts', 'torch')}))"
)


@dataclass(frozen=True)
class Probe:
    """What one interpreter can import."""

    f5_tts: bool
    torch: bool


_FOUND: dict[str, Probe] = {}  # interpreters found with f5_tts: that rarely goes away, so asked once a process


def probe(python: str) -> Probe | None:
    """What ``python`` can find, asked in a short subprocess; None when it does not run or answer."""
    if python in _FOUND:
        return _FOUND[python]
    answer = _ask(python, _PROBE)
    if answer is None:
        return None
    try:
        found = json.loads(answer)
    except ValueError:
        return None
    result = Probe(f5_tts=found.get("f5_tts") is True, torch=found.get("torch") is True)
    if result.f5_tts:
        _FOUND[python] = result
    return result


def _ask(python: str, code: str, env: dict[str, str] | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """What ``code`` run by ``python`` prints after the marker; None when it does not run or answer (an
    interpreter that fails is one without the stack). Anything else it prints is ignored."""
    try:
        proc = subprocess.run(
            [python, "-c", code],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return next((line[len(_MARK) :] for line in proc.stdout.splitlines() if line.startswith(_MARK)), None)


ask = _ask  # `f5guard doctor` asks the stack python what torch and the GPU say


_LOCATE = (
    "import importlib.util as u\n"
    "s = u.find_spec('f5_tts')\n"
    "where = s.submodule_search_locations if s else None\n"
    "print('F5GUARD-PY ' + (next(iter(where), '') if where else ''))"
)


def f5_tts_dir(python: str) -> Path | None:
    """Where ``python`` finds the f5_tts package (not imported); None when it has none or does not answer."""
    if same_environment(python):
        spec = importlib.util.find_spec("f5_tts")
        found = next(iter(spec.submodule_search_locations), "") if spec and spec.submodule_search_locations else ""
        return Path(found) if found else None
    answer = _ask(python, _LOCATE)  # no answer is no f5_tts
    return Path(answer) if answer else None


def same_environment(python: str, other: str = sys.executable) -> bool:
    """Two interpreter paths of one environment: the same bin folder (a venv's ``python`` and ``python3`` are
    links to one binary, but so is another venv's, whose site-packages differ)."""
    return os.path.realpath(os.path.dirname(os.path.abspath(python))) == os.path.realpath(
        os.path.dirname(os.path.abspath(other))
    )


def path_pythons(path: str | None = None) -> list[str]:
    """Every ``python3`` on PATH, in order, that is not an interpreter of this environment."""
    found: list[str] = []
    for folder in (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep):
        candidate = os.path.abspath(os.path.join(folder or ".", "python3"))  # stages start in another folder
        if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
            continue
        if same_environment(candidate) or any(same_environment(candidate, seen) for seen in found):
            continue
        found.append(candidate)
    return found


def auto() -> tuple[str, str]:
    """(interpreter, why it was chosen) for ``python = "auto"``."""
    if importlib.util.find_spec("f5_tts") is not None:
        return sys.executable, "auto: the daemon's own Python has f5_tts"
    with_torch: str | None = None
    for candidate in path_pythons():
        found = probe(candidate)
        if found is None:
            continue
        if found.f5_tts:
            return candidate, "auto: the first python3 on PATH with f5_tts"
        if found.torch and with_torch is None:
            with_torch = candidate
    if with_torch is not None:
        return with_torch, "auto: the first python3 on PATH with torch (no f5_tts yet: the setup stage installs it)"
    return sys.executable, "auto: no Python here has f5_tts or torch; the daemon's own Python"


UNRESOLVED = "auto: not looked for by this command (only the stages need it)"


def resolve(setting: str, config_dir: Path, work: Path, where: str, file: Path, *, look: bool = True) -> StackPython:
    """The ``python`` setting as the stages will use it; ConfigError (one line) for one that cannot run.

    ``look=False`` (commands that only read state: status, plot) leaves "auto" unresolved: finding it may start an
    interpreter per ``python3`` on PATH, and `f5guard status` with no daemon running must stay instant."""
    if setting == AUTO and not look:
        return StackPython(path=sys.executable, how=UNRESOLVED)
    if setting == AUTO:
        python, how = auto()
    else:
        python, how = _explicit(setting, config_dir, where, file), "set in the config"
    shim = None if same_environment(python) else str(pythonpath_dir(work))
    return StackPython(path=python, how=how, pythonpath=shim)


def _explicit(setting: str, config_dir: Path, where: str, file: Path) -> str:
    """A path (relative to the config's folder, ``~`` expanded) or a bare name looked up on PATH. Not resolved:
    a venv's ``bin/python`` is a link to the base interpreter, and following it would leave the venv."""
    fix = 'set python = "auto", or the path of the Python that has torch and f5-tts'
    text = check_path(expand(setting, placeholder_values(config_dir, Path(), Path()), where, file), where, file)
    if "/" not in text:
        found = shutil.which(text)
        if found is None:
            raise ConfigError(f"{file}: {where}: {text!r} not found on PATH ({fix})")
        text = found
    path = os.path.normpath(os.path.join(config_dir, os.path.expanduser(text)))
    if os.path.isdir(path):
        raise ConfigError(f"{file}: {where}: {path} is a folder, not a Python interpreter ({fix})")
    if not os.path.exists(path):
        raise ConfigError(f"{file}: {where}: {path} not found ({fix})")
    if not os.access(path, os.X_OK):
        raise ConfigError(f"{file}: {where}: {path} is not executable ({fix})")
    return path


def pythonpath_dir(work: Path) -> Path:
    """The folder the stack python finds f5guard in: a link to this package, and nothing else."""
    return WorkLayout(work).root / ".f5guard" / "pythonpath"


def package_dir() -> Path:
    return Path(__file__).resolve().parent.parent


def ensure_pythonpath(folder: str | os.PathLike[str]) -> None:
    """Make ``folder/f5guard`` a link to the daemon's own package (replaced atomically when it names another:
    an upgraded f5guard, or another checkout). Raises OSError."""
    link = Path(folder) / "f5guard"
    target = str(package_dir())
    try:
        if os.readlink(link) == target:
            return
    except OSError:
        pass
    link.parent.mkdir(parents=True, exist_ok=True)
    temp = link.with_name(f".f5guard.{os.getpid()}.tmp")
    temp.unlink(missing_ok=True)
    os.symlink(target, temp)
    os.replace(temp, link)


def stack_env(env: dict[str, str], python: StackPython | None) -> dict[str, str]:
    """``env`` with the f5guard-only folder first on PYTHONPATH when the stack python is not the daemon's, and
    SEPARATE_ENV saying so (the setup stage then leaves that Python's filelock alone: pins.overrides_here)."""
    if python is None or python.pythonpath is None:
        return env
    rest = env.get("PYTHONPATH", "")
    joined = python.pythonpath + (os.pathsep + rest if rest else "")
    return {**env, "PYTHONPATH": joined, SEPARATE_ENV: python.pythonpath}
