"""File names that are not valid UTF-8 (``bad\\xffbyte.wav`` from an old zip) are read by their real name and
shown and stored with the bad bytes as ``\\xNN`` escapes. Before, `--dry-run` printed a traceback
(UnicodeEncodeError in the fingerprint) and the daemon died at every start."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import Project

BAD = os.fsdecode(b"bad\xffbyte.wav")  # the real name, as Python holds it (surrogate-escaped)
SHOWN = "bad\\xffbyte.wav"  # how f5guard writes it

PIPELINE = """
[[runs]]
name = "r"
[[runs.stages]]
name = "a"
inputs = ["{config_dir}/raw"]
outputs = ["{work}/out/*"]
command = ["{python}", "-c", 'import os,sys; d=os.fsencode(sys.argv[1]); os.makedirs(d, exist_ok=True); open(os.path.join(d, b"made\\xffhere.out"), "wb").write(b"x")', "{work}/out"]
"""


def dry(p: Project) -> list[str]:
    proc = p.cli("start", "--dry-run", timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_a_non_utf8_input_is_fingerprinted_and_shown_escaped(make_project) -> None:  # type: ignore[no-untyped-def]
    """The daemon runs the stage, state names the file escaped, a change to it is seen, and an output with such
    a name counts as intact (no rerun on every start)."""
    p: Project = make_project(PIPELINE)
    raw = p.root / "raw"
    raw.mkdir()
    (raw / BAD).write_bytes(b"first")
    (raw / "good.wav").write_bytes(b"good")
    assert dry(p)[1] == "  a: would run: never completed"

    p.cli("start", check=True)
    p.wait_run("r", timeout=30)
    p.cli("stop", check=True)
    record = p.state()["runs"]["r"]["stages"]["a"]
    assert f"{raw}/{SHOWN}" in record["fingerprint_parts"]["inputs"]
    assert list(record["outputs"]) == [f"{p.work}/out/made\\xffhere.out"]
    assert dry(p)[1] == "  a: up to date", "the escaped output name still finds the real file"

    (raw / BAD).write_bytes(b"second")
    assert dry(p)[1] == f"  a: would run: input modified: {raw}/{SHOWN}"
    (raw / BAD).unlink()
    assert dry(p)[1] == f"  a: would run: input removed: {raw}/{SHOWN}"


def test_shown_escapes_only_what_is_not_utf8(tmp_path: Path) -> None:
    """Valid names (Vietnamese letters included) are shown as they are; only undecodable bytes are escaped."""
    from f5guard.regularfiles import is_shown_as_is, shown

    assert shown("/a/Giọng đọc/bài 1.wav") == "/a/Giọng đọc/bài 1.wav"
    assert shown(f"/a/{BAD}") == f"/a/{SHOWN}" and shown(Path(BAD)) == SHOWN
    assert is_shown_as_is("bài.wav") and not is_shown_as_is(BAD)
