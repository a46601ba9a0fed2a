"""``python = "auto" | PATH``: the training stack runs in the stack python, which may be another interpreter than
the daemon's; it sees f5guard through a folder holding only a link to the package, and f5guard's trainer and
recipe entries need none of the daemon's own dependencies there."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from f5guard.config import load_config
from f5guard.errors import ConfigError
from f5guard.stages.stackpython import ensure_pythonpath, package_dir, stack_env

ROOT = Path(__file__).resolve().parent.parent
DAEMON_ONLY = ("psutil", "structlog", "watchdog", "filelock", "click", "rich")


def _script(path: Path, text: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _config(tmp_path: Path, python: str | None) -> Path:
    (tmp_path / "home").mkdir(exist_ok=True)
    line = "" if python is None else f"python = {python!r}\n".replace("'", '"')
    body = f"""\
        home = "{tmp_path}/home"
        work = "{tmp_path}/work"
        {line}
        [[runs]]
        name = "voice"
        [[runs.stages]]
        name = "setup"
        type = "setup"
        [[runs.stages]]
        name = "hello"
        command = ["{{python}}", "-c", "print(1)"]
        [[runs.stages]]
        name = "train"
        type = "train"
        dataset = "{tmp_path}/data"
        """
    path = tmp_path / "f5guard.toml"
    path.write_text(textwrap.dedent(body).replace("\n\n[[runs]]", "\n[[runs]]"))
    return path


def test_an_explicit_python_runs_every_stage_that_runs_the_stack(tmp_path: Path) -> None:
    """The setup stage, the builtin trainer and {python} use it; f5guard's stages get the f5guard-only folder
    first on PYTHONPATH, a plain command stage does not."""
    other = _script(tmp_path / "stack" / "bin" / "python3", f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    config = load_config(_config(tmp_path, str(other)))
    assert config.python.path == str(other) and config.python.how == "set in the config"
    folder = str(tmp_path / "work" / ".f5guard" / "pythonpath")
    assert config.python.pythonpath == folder
    setup, hello, train = config.runs[0].stages
    assert setup.command[:3] == (str(other), "-m", "f5guard.recipe.setup")
    assert train.command[:3] == (str(other), "-m", "f5guard.trainer")
    assert hello.command[0] == str(other)
    assert setup.python == train.python == config.python and hello.python is None
    env = stack_env({"PYTHONPATH": "/colab/env", "A": "1"}, setup.python)
    assert env == {"PYTHONPATH": f"{folder}:/colab/env", "A": "1", "F5GUARD_PYTHONPATH": folder}
    assert stack_env({"A": "1"}, hello.python) == {"A": "1"}
    # Which rule chose it may change (torch, then f5_tts once setup installed it); the stages are the same.
    assert replace(config.python, how="auto: another rule") == config.python


def test_a_python_of_this_environment_needs_no_folder(tmp_path: Path) -> None:
    """The daemon's own interpreter (under any of its names) already imports f5guard."""
    for name in ("python", "python3"):
        config = load_config(_config(tmp_path, str(Path(sys.executable).with_name(name))))
        assert config.python.pythonpath is None
    if importlib.util.find_spec("f5_tts") is not None:
        auto = load_config(_config(tmp_path, None)).python
        assert (auto.path, auto.pythonpath) == (sys.executable, None)
        assert auto.how == "auto: the daemon's own Python has f5_tts"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("{config_dir}/nowhere/python3", "nowhere/python3 not found"),
        ("no-such-python-f5guard", "'no-such-python-f5guard' not found on PATH"),
        ("{config_dir}", "is a folder, not a Python interpreter"),
        ("{config_dir}/plain.txt", "plain.txt is not executable"),
        ("", "must not be empty"),
    ],
)
def test_a_python_that_cannot_run_is_one_line(tmp_path: Path, value: str, needle: str) -> None:
    (tmp_path / "plain.txt").write_text("not a program")
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, value))
    message = caught.value.message
    assert "\n" not in message and ": python: " in message and needle in message, message
    if value:
        assert 'set python = "auto"' in message


def _auto_in(python: str, path: list[Path], tmp_path: Path) -> tuple[str, str]:
    """``auto()`` as a daemon running in ``python`` (without f5_tts) resolves it with this PATH."""
    code = "from f5guard.stages.stackpython import auto; print('\\n'.join(auto()))"
    env = {**os.environ, "PATH": os.pathsep.join(map(str, path)), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    chosen, how = proc.stdout.strip().splitlines()
    return chosen, how


def test_auto_finds_the_python_with_the_stack(tmp_path: Path) -> None:
    """A daemon whose own Python lacks f5_tts: the first python3 on PATH with f5_tts, else the first with torch
    (setup installs f5-tts there), else its own. Real interpreters; the torch-only one sees a bare package."""
    daemon = "/usr/bin/python3"
    if (
        not os.access(daemon, os.X_OK)
        or subprocess.run(
            [daemon, "-c", "import importlib.util as u, sys; sys.exit(u.find_spec('f5_tts') is not None)"], check=False
        ).returncode
    ):
        pytest.skip("needs a system python3 without f5_tts")
    bare = _script(tmp_path / "bare" / "python3", f'#!/bin/sh\nexec {daemon} "$@"\n')
    (tmp_path / "fake" / "torch").mkdir(parents=True)
    (tmp_path / "fake" / "torch" / "__init__.py").write_text("")
    torch_only = _script(
        tmp_path / "torchonly" / "python3", f'#!/bin/sh\nPYTHONPATH={tmp_path}/fake exec {daemon} "$@"\n'
    )
    stack = tmp_path / "stack" / "python3"
    if importlib.util.find_spec("f5_tts") is not None:
        _script(stack, f'#!/bin/sh\nexec {sys.executable} "$@"\n')
        chosen, how = _auto_in(daemon, [bare.parent, torch_only.parent, stack.parent], tmp_path)
        assert (chosen, how) == (str(stack), "auto: the first python3 on PATH with f5_tts")
    chosen, how = _auto_in(daemon, [bare.parent, torch_only.parent], tmp_path)
    assert chosen == str(torch_only) and "with torch" in how
    chosen, how = _auto_in(daemon, [bare.parent, Path(daemon).parent], tmp_path)
    assert chosen == daemon and "the daemon's own Python" in how


def test_the_folder_holds_a_link_to_this_package_only(tmp_path: Path) -> None:
    folder = tmp_path / "work" / ".f5guard" / "pythonpath"
    ensure_pythonpath(folder)
    assert os.listdir(folder) == ["f5guard"] and os.readlink(folder / "f5guard") == str(package_dir())
    (folder / "f5guard").unlink()
    os.symlink(tmp_path, folder / "f5guard")  # an older f5guard's link: replaced
    ensure_pythonpath(folder)
    assert os.readlink(folder / "f5guard") == str(package_dir()) and os.listdir(folder) == ["f5guard"]
    assert stat.S_ISLNK(os.lstat(folder / "f5guard").st_mode)


# An import of a daemon-only package issued by f5guard's own code is refused; the same package imported by a
# third-party library (huggingface_hub uses filelock) is that library's business, in the stack python's own copy.
_BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = set(sys.argv.pop(1).split(","))

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] not in BLOCKED:
                return None
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
                frame = frame.f_back
            importer = frame.f_globals.get("__name__", "") if frame is not None else ""
            if importer.split(".")[0] == "f5guard" or importer == "__main__":
                raise ImportError(f"{importer} imports {name}, which only the daemon's environment has")
            return None

    sys.meta_path.insert(0, Refuse())
    """
)


def _blocked(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-c", _BLOCKER + code, ",".join(DAEMON_ONLY), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


@pytest.mark.train
@pytest.mark.slow
def test_trainer_and_recipe_need_none_of_the_daemons_packages() -> None:
    """Every module under f5guard.trainer and f5guard.recipe imports, and every entry answers --help, with
    f5guard's own imports of psutil, structlog, watchdog, filelock, click and rich refused."""
    pytest.importorskip("torch")
    pytest.importorskip("f5_tts")
    walk = textwrap.dedent(
        """
        import importlib, pkgutil
        import f5guard.trainer, f5guard.recipe
        for package in (f5guard.trainer, f5guard.recipe):
            for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                importlib.import_module(info.name)
        daemon_side = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("loaded by others:", daemon_side)
        print("ok", len([m for m in sys.modules if m.startswith("f5guard.")]))
        """
    )
    proc = _blocked(walk)
    assert proc.returncode == 0 and "ok " in proc.stdout, proc.stderr[-3000:]
    entries = ["f5guard.trainer", "f5guard.trainer.export"] + [
        f"f5guard.recipe.{m}" for m in ("setup", "pretrained", "ingest", "separate", "segment", "transcribe", "prepare")
    ]
    run = "import runpy; module = sys.argv[1]; sys.argv[1:2] = []; runpy.run_module(module, run_name='__main__')"
    for entry in entries:
        proc = _blocked(run, entry, "--help")
        assert proc.returncode == 0 and "usage:" in proc.stdout, f"{entry}: {proc.stderr[-2000:]}"


def test_the_blocker_refuses_what_f5guard_imports() -> None:
    """The guard above is real: f5guard's lease module (the daemon side) is refused its filelock."""
    proc = _blocked("import f5guard.lease.hold")
    assert proc.returncode != 0 and "imports filelock, which only the daemon's environment has" in proc.stderr


def test_command_mode_finds_finetune_cli_checkpoints_where_the_stack_python_has_f5_tts(tmp_path: Path) -> None:
    """finetune_cli saves beside the f5_tts package of the Python that runs it, not of the daemon's."""
    spec = importlib.util.find_spec("f5_tts")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs f5_tts")
    stack = _script(tmp_path / "stack" / "python3", f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    bare = _script(tmp_path / "bare" / "python3", "#!/bin/sh\nexec /usr/bin/env -i /bin/false\n")
    (tmp_path / "home").mkdir()
    for python, expected in ((stack, True), (bare, False)):
        path = tmp_path / "f5guard.toml"
        path.write_text(
            f'home = "{tmp_path}/home"\nwork = "{tmp_path}/work"\npython = "{python}"\n[[runs]]\nname = "v"\n'
            '[[runs.stages]]\nname = "train"\ntype = "train"\nmode = "command"\n'
            'command = ["{python}", "-m", "f5_tts.train.finetune_cli", "--dataset_name", "vi"]\n'
        )
        if expected:
            stage = load_config(path).runs[0].stages[0]
            package = Path(next(iter(spec.submodule_search_locations)))
            assert stage.options.checkpoint_dir == str((package / ".." / ".." / "ckpts" / "vi").resolve())  # type: ignore[union-attr]
            assert stage.python is not None and stage.python.path == str(stack)
        else:
            with pytest.raises(ConfigError) as caught:
                load_config(path)
            assert "checkpoint_dir" in caught.value.message and "installed in the stack python" in caught.value.message


def test_status_and_plot_do_not_look_for_the_stack_python(tmp_path: Path) -> None:
    """`python = "auto"` may start an interpreter per python3 on PATH; status (no daemon running) and plot run no
    stage and must not, while start --dry-run does. The daemon's Python is made to miss f5_tts, and the only
    python3 on PATH records each time it is started."""
    config = _config(tmp_path, None)
    calls = tmp_path / "calls.txt"
    _script(tmp_path / "bin" / "python3", f'#!/bin/sh\necho "$@" >> {calls}\nexec {sys.executable} "$@"\n')
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    runner = (
        "import importlib.util, sys\n"
        "find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'f5_tts' else find(name, *a)\n"
        "from f5guard.cli import main\n"
        "sys.argv = ['f5guard', *sys.argv[1:]]\n"
        "main()\n"
    )

    def f5guard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", runner, *args], env=env, capture_output=True, text=True)

    status = f5guard("status", "--config", str(config))
    assert status.returncode == 1 and "no f5guard supervisor runs here" in status.stdout, status
    plot = f5guard("plot", "--config", str(config), "--out", str(tmp_path / "p.png"))
    assert "Traceback" not in plot.stderr, plot.stderr
    assert not calls.exists(), f"status/plot started the PATH's python3: {calls.read_text()}"
    dry = f5guard("start", "--dry-run", "--config", str(config))
    assert calls.exists(), (dry.stdout, dry.stderr)  # the stages need it: start looks
    assert f"{tmp_path / 'bin' / 'python3'}" in dry.stdout + dry.stderr, dry.stdout
