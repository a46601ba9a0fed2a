"""Every invalid config is one clear line naming the file and the key, with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from f5guard.config import load_config
from f5guard.errors import ConfigError
from f5guard.schema import Scope

GOOD_STAGES = """
[[runs]]
name = "r"
[[runs.stages]]
name = "a"
command = ["echo", "{run}"]
outputs = ["{work}/a.txt"]
[[runs.stages]]
name = "b"
inputs = ["{work}/a.txt"]
command = ["{python}", "-c", "pass"]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "home").mkdir(exist_ok=True)
    path = tmp_path / "f5guard.toml"
    path.write_text(text)
    return path


def config_text(tmp_path: Path, stages: str = GOOD_STAGES, head: str | None = None) -> str:
    head = head if head is not None else f'home = "{tmp_path}/home"\nwork = "{tmp_path}/work"\n'
    return head + stages


def test_good_config_expands_placeholders(tmp_path: Path) -> None:
    """Placeholders expand everywhere and relative paths anchor at the config's folder."""
    config = load_config(write(tmp_path, config_text(tmp_path)))
    a, b = config.runs[0].stages
    assert a.command == ("echo", "r")
    assert a.outputs == (f"{tmp_path}/work/a.txt",)
    assert b.command[0] == sys.executable
    assert a.scope is Scope.HOME and not a.long_running
    assert config.lease.duration_s == 120 and config.lease.heartbeat_interval_s == 40


BAD_CASES = [
    ("unknown top key", 'homee = "x"\n', "unknown key 'homee'", "did you mean 'home'"),
    (
        "unknown stage key",
        GOOD_STAGES.replace('name = "b"', 'name = "b"\ncomand = ["x"]'),
        "runs[0].stages[1]: unknown key 'comand'",
        "did you mean 'command'",
    ),
    (
        "wrong type",
        GOOD_STAGES.replace('command = ["echo", "{run}"]', 'command = "echo"'),
        "runs[0].stages[0].command: expected a list",
        "",
    ),
    (
        "wrong item type",
        GOOD_STAGES.replace('["echo", "{run}"]', '["echo", 3]'),
        "runs[0].stages[0].command: item 1 must be a string",
        "",
    ),
    ("duplicate run", GOOD_STAGES + GOOD_STAGES, "runs[1].name: duplicate run name 'r'", ""),
    (
        "duplicate stage",
        GOOD_STAGES.replace('name = "b"', 'name = "a"'),
        "runs[0].stages[1].name: duplicate stage name 'a'",
        "",
    ),
    (
        "reads a later output",
        GOOD_STAGES.replace('outputs = ["{work}/a.txt"]', 'inputs = ["{work}/a.txt"]').replace(
            'inputs = ["{work}/a.txt"]\ncommand = ["{python}"', 'outputs = ["{work}/a.txt"]\ncommand = ["{python}"'
        ),
        "stage 'a' reads",
        "made only by the later stage 'b'",
    ),
    ("unknown placeholder", GOOD_STAGES.replace("{run}", "{speaker}"), "unknown placeholder {speaker}", ""),
    (
        "bad scope",
        GOOD_STAGES.replace('name = "b"', 'name = "b"\nscope = "forever"'),
        "runs[0].stages[1].scope: must be 'runtime' or 'home'",
        "",
    ),
    (
        "unknown stage type",
        GOOD_STAGES.replace('name = "b"', 'name = "b"\ntype = "magic"'),
        "runs[0].stages[1].type: unknown stage type 'magic'",
        "",
    ),
    ("no runs", "", "runs: no runs defined", ""),
    ("negative number", "[lease]\nduration_s = -1\n" + GOOD_STAGES, "lease.duration_s: must be positive", ""),
    ("bad toml", "[[runs]\nname=", "invalid TOML", ""),
    (
        "negative export_every",
        '[[runs]]\nname = "r"\n[[runs.stages]]\nname = "t"\ntype = "train"\nexport_every = -2\n',
        "runs[0].stages[0].export_every: must be 0 (off) or a number of updates, got -2",
        "",
    ),
    ("name with slash", GOOD_STAGES.replace('name = "r"', 'name = "a/b"'), "runs[0].name: run name 'a/b'", ""),
]


@pytest.mark.parametrize(("case", "body", "needle", "hint"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_config_is_one_line_exit_2(tmp_path: Path, case: str, body: str, needle: str, hint: str) -> None:
    """The real CLI prints one line naming the file and key, and exits 2."""
    path = write(tmp_path, config_text(tmp_path, body))
    proc = subprocess.run(
        [sys.executable, "-m", "f5guard", "status", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and needle in lines[0] and hint in lines[0], lines[0]


def test_missing_required_paths(tmp_path: Path) -> None:
    """home and work are required; a home whose parent is missing (Drive not mounted) is refused."""
    with pytest.raises(ConfigError, match=r"home: is required"):
        load_config(write(tmp_path, config_text(tmp_path, head=f'work = "{tmp_path}/w"\n')))
    with pytest.raises(ConfigError, match=r"work: is required"):
        load_config(write(tmp_path, config_text(tmp_path, head=f'home = "{tmp_path}/h"\n')))
    with pytest.raises(
        ConfigError, match=r"home: neither .*/nodrive/MyDrive/x nor its parent .* \(is Drive mounted\?\)"
    ):
        load_config(
            write(
                tmp_path, config_text(tmp_path, head=f'home = "{tmp_path}/nodrive/MyDrive/x"\nwork = "{tmp_path}/w"\n')
            )
        )


def test_missing_config_file(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "f5guard", "status", "--config", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "nope.toml: config not found" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_config_found_via_env_and_cwd(tmp_path: Path) -> None:
    """--config, then $F5GUARD_CONFIG, then ./f5guard.toml."""
    path = write(tmp_path, config_text(tmp_path))
    other = tmp_path / "elsewhere"
    other.mkdir()
    env_run = subprocess.run(
        [sys.executable, "-m", "f5guard", "start", "--dry-run"],
        cwd=other,
        env={"F5GUARD_CONFIG": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert env_run.returncode == 0 and "a: would run: never completed" in env_run.stdout, env_run.stderr
    cwd_run = subprocess.run(
        [sys.executable, "-m", "f5guard", "start", "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cwd_run.returncode == 0 and "b: would run" in cwd_run.stdout, cwd_run.stderr


def test_init_writes_a_loadable_commented_config(tmp_path: Path) -> None:
    (tmp_path / "drive").mkdir()
    target = tmp_path / "f5guard.toml"
    args = [
        sys.executable,
        "-m",
        "f5guard",
        "init",
        "--home",
        str(tmp_path / "drive" / "proj"),
        "--work",
        str(tmp_path / "w"),
        "-o",
        str(target),
    ]
    first = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "# Persistent folder" in target.read_text()
    assert load_config(target).home == tmp_path / "drive" / "proj"
    again = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr
