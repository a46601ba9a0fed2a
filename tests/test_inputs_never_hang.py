"""No hangs: fingerprints read only regular files (a FIFO, socket, device or dangling symlink among a stage's
inputs is listed as not read, with why), and a pattern that would walk the whole filesystem is refused at once.
Before, a FIFO named x.wav blocked `--dry-run` and the daemon's control loop forever, /dev/zero was hashed
without end, and `/**/**/*` walked the disk for over ten minutes."""

from __future__ import annotations

import glob
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from f5guard.errors import ConfigError
from tests.conftest import Project

DRY_TIMEOUT_S = 30  # the old behaviour never returns: a fixed bound turns the hang into a failure

STAGE = """
[[runs]]
name = "r"
[[runs.stages]]
name = "a"
inputs = [{inputs}]
command = ["sh", "-c", "echo x >> {{work}}/a.count"]
"""


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "p" / "raw" / "s.wav"
    path.parent.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    yield path
    server.close()


def hostile_folder(raw: Path) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "good.wav").write_bytes(b"RIFF data")
    os.mkfifo(raw / "x.wav")
    (raw / "zero.wav").symlink_to("/dev/zero")  # a device that never ends: hashing it never returned
    (raw / "gone.wav").symlink_to(raw / "nowhere.wav")
    (raw / "loop.wav").symlink_to(raw / "loop.wav")


def dry(p: Project) -> subprocess.CompletedProcess[str]:
    return p.cli("start", "--dry-run", timeout=DRY_TIMEOUT_S)


def test_dry_run_lists_what_it_does_not_read(make_project, unix_socket: Path) -> None:  # type: ignore[no-untyped-def]
    """A FIFO, a socket, a device, a dangling symlink and a loop: each named with its reason, the plan printed."""
    p: Project = make_project(STAGE.format(inputs='"{config_dir}/raw"'))
    raw = p.root / "raw"
    hostile_folder(raw)
    proc = dry(p)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "  a: would run: never completed" in lines
    assert f"    not read: {raw}/x.wav: not a regular file (a FIFO)" in lines
    assert f"    not read: {raw}/s.wav: not a regular file (a socket)" in lines
    assert f"    not read: {raw}/zero.wav: not a regular file (a character device)" in lines
    assert f"    not read: {raw}/gone.wav: dangling symlink (-> {raw}/nowhere.wav)" in lines
    assert f"    not read: {raw}/loop.wav: symlink loop" in lines
    assert not any("good.wav" in line for line in lines)


def test_the_daemon_runs_and_skips_past_a_fifo(make_project, unix_socket: Path) -> None:  # type: ignore[no-untyped-def]
    """The control loop is never blocked: the run completes, the next pass finds it up to date, and state
    records each input that was not read with its reason."""
    p: Project = make_project(STAGE.format(inputs='"{config_dir}/raw"'))
    raw = p.root / "raw"
    hostile_folder(raw)
    p.cli("start", check=True)
    p.wait_run("r", timeout=30)
    p.cli("stop", check=True)
    inputs = p.state()["runs"]["r"]["stages"]["a"]["fingerprint_parts"]["inputs"]
    assert inputs[f"{raw}/x.wav"] == "skipped: not a regular file (a FIFO)"
    assert inputs[f"{raw}/s.wav"] == "skipped: not a regular file (a socket)"
    assert inputs[f"{raw}/loop.wav"] == "skipped: symlink loop"
    assert "#" in inputs[f"{raw}/good.wav"], "the regular file is hashed"
    assert dry(p).stdout.splitlines()[1] == "  a: up to date"


@pytest.mark.parametrize("pattern", ["/**/**/*", "/**", "/*/**/x.wav", "/"])
def test_a_pattern_that_recurses_from_root_is_refused_at_once(make_project, pattern: str) -> None:  # type: ignore[no-untyped-def]
    """One line, exit 2, when the config is read, before any walk: the whole filesystem is never a stage's input."""
    p: Project = make_project(STAGE.format(inputs=f'"{pattern}"'))
    proc = dry(p)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"f5guard: {p.config}: runs[0].stages[0].inputs: ")
    assert lines[0].endswith(f"{pattern}: recurses from / (the whole filesystem); start it at the folder to read")


def test_start_refuses_a_pattern_that_recurses_from_root(make_project) -> None:  # type: ignore[no-untyped-def]
    """`start` refuses it too (exit 2, the config named); no daemon starts to fail later."""
    p: Project = make_project(STAGE.format(inputs='"/**/**/*"'))
    proc = p.cli("start")
    assert proc.returncode == 2 and "recurses from / (the whole filesystem)" in proc.stderr
    assert p.daemon_pid() is None


def test_an_expansion_stops_at_its_entry_budget(tmp_path: Path) -> None:
    """A glob or folder that lists more entries than the bound fails naming the pattern, instead of walking on."""
    from f5guard.stages.walk import MAX_ENTRIES, expand

    tree = tmp_path / "many"
    for i in range(30):
        (tree / f"d{i}").mkdir(parents=True)
        for j in range(5):
            (tree / f"d{i}" / f"{j}.wav").write_bytes(b"")
    for pattern in (f"{tree}/**/*.wav", str(tree), f"{tree}/*"):
        with pytest.raises(ConfigError, match=r"lists more than 100 directory entries \(stopped there\)"):
            expand([pattern], limit=100)
        files, unmatched = expand([pattern], limit=1000)  # a "**" lists each folder twice (glob does too)
        assert len(files) == 150 and not unmatched
    assert MAX_ENTRIES == 100_000  # documented in docs/config.md


def test_matching_is_glob_globs(tmp_path: Path) -> None:
    """The bounded walk matches what glob.glob(recursive=True) matched, so no fingerprint changes on upgrade."""
    from f5guard.stages.walk import expand

    root = tmp_path / "t"
    for rel in ("a/x.wav", "a/.hidden.wav", "a/b/y.wav", "a/b/c/z.WAV", ".dot/q.wav", "a/.h/w.wav", "n.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    (root / "link").symlink_to(root / "a" / "b")
    patterns = ["**", "**/*.wav", "a/**", "a/**/*.wav", "*/*.wav", "a/*", "*/b/*", "a/.*", "**/b", "a/[bx]*",
                "a/?.wav", "a/**/", "*/", "nothing/**", "a/x.wav", "l*/*"]  # fmt: skip
    for rel in patterns:
        pattern = f"{root}/{rel}"
        want = sorted(glob.glob(pattern, recursive=True))
        files, unmatched = expand([pattern])
        walked = set()
        for match in want:  # what the old expansion made of glob's matches: folders walked, files as they are
            if os.path.isdir(match):
                walked |= {os.path.join(r, n) for r, _d, names in os.walk(match) for n in names}
            elif os.path.lexists(match):
                walked.add(match)
        assert set(files) == walked, rel
        assert (pattern in unmatched) == (not want), rel


def test_outputs_past_the_budget_are_a_problem_of_the_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs are checked after the stage exits: too many entries is a reason the stage failed, never a crash."""
    from f5guard.stages import walk
    from f5guard.stages.fingerprint import check_outputs

    made = tmp_path / "made"
    made.mkdir()
    for i in range(20):
        (made / f"{i}.wav").write_bytes(b"")
    monkeypatch.setattr(walk, "MAX_ENTRIES", 10)
    assert check_outputs([str(made)], {}) == [
        f"outputs: {made}: lists more than 10 directory entries (stopped there); name a narrower folder or glob"
    ]
