"""Per-file errors stay per-file: a file ingest cannot or must not read is listed as skipped with the reason, like
a corrupt one, and the rest goes on; segment then leaves it out, saying why.

Before: a FIFO or /dev/zero made ingest hang, a dangling symlink, a loop or an unreadable file failed the whole
ingest, and a name that is not valid UTF-8 crashed it (UnicodeEncodeError).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.recipe_audio_support import SENTENCES, make_recording, need_tools, ok, read_json, run_stage

pytestmark = pytest.mark.train

HANG_S = 120  # the old ingest never returned on a FIFO or a device: this bound makes that a failure
UNREADABLE_FOR_ROOT = "/proc/sys/vm/drop_caches"  # mode 0200: open for reading fails even for root


def _unreadable(path: Path) -> str:
    if os.geteuid() != 0:
        path.write_bytes(b"RIFF")
        path.chmod(0)
        return "unreadable: Permission denied"
    if not os.path.exists(UNREADABLE_FOR_ROOT):
        pytest.skip("running as root and no file root cannot read")
    path.symlink_to(UNREADABLE_FOR_ROOT)
    return "unreadable: Permission denied"


def _socket(path: Path) -> str:
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))  # the socket file stays after close: only the directory entry matters here
    return "not a regular file (a socket)"


CASES: dict[str, tuple[str, Callable[[Path], str]]] = {
    "fifo": ("x.wav", lambda p: (os.mkfifo(p), "not a regular file (a FIFO)")[1]),
    "device": ("zero.wav", lambda p: (p.symlink_to("/dev/zero"), "not a regular file (a character device)")[1]),
    "socket": ("s.wav", _socket),
    "dangling": ("gone.mp3", lambda p: (p.symlink_to(p.parent / "nowhere.mp3"), f"dangling symlink (-> {p.parent}/nowhere.mp3)")[1]),
    "loop": ("loop.flac", lambda p: (p.symlink_to(p), "symlink loop")[1]),
    "unreadable": ("locked.wav", _unreadable),
    "not utf-8": (os.fsdecode(b"bad\xffbyte.wav"), lambda p: (p.write_bytes(b"RIFF"), "file name is not valid UTF-8 (rename it to use it)")[1]),
}  # fmt: skip


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real spoken recording, copied into each case's folder."""
    need_tools()
    return make_recording(tmp_path_factory.mktemp("good") / "good.wav", list(SENTENCES[:2])).path


@pytest.mark.parametrize("case", list(CASES))
def test_ingest_lists_the_file_as_skipped_and_goes_on(good: Path, tmp_path: Path, case: str) -> None:
    """Exit 0; the good file is in the inventory; the bad one is listed with ok=false, no hash, and its reason."""
    audio = tmp_path / "audio" / "sub"
    audio.mkdir(parents=True)
    (audio / "good.wav").write_bytes(good.read_bytes())
    name, make = CASES[case]
    reason = make(audio / name)
    shown = os.fsencode(name).decode("utf-8", "backslashreplace")

    proc = ok(run_stage("ingest", "--audio", tmp_path / "audio", "--out", tmp_path / "out", timeout=HANG_S))
    files = {f["name"]: f for f in read_json(tmp_path / "out" / "inventory.json")["files"]}
    assert files["sub/good.wav"]["ok"] is True
    bad = files[f"sub/{shown}"]
    assert (bad["ok"], bad["sha256"], bad["reason"]) == (False, None, reason)
    assert bad["path"] == f"{audio}/{shown}"
    assert f"skipped: sub/{shown}: {reason} (listed with ok=false, left out of the recipe)" in proc.stdout
    assert "1 ok" in proc.stdout and "1 not read" in proc.stdout


def test_segment_leaves_the_skipped_files_out_and_says_why(good: Path, tmp_path: Path) -> None:
    """All the hostile files in one folder: ingest and segment both finish; segment lists each as not read."""
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "good.wav").write_bytes(good.read_bytes())
    reasons = {}
    for name, make in CASES.values():
        reasons[os.fsencode(name).decode("utf-8", "backslashreplace")] = make(audio / name)
    ok(run_stage("ingest", "--audio", audio, "--out", tmp_path / "ingest", timeout=HANG_S))
    proc = ok(run_stage("segment", "--inventory", tmp_path / "ingest" / "inventory.json", "--out", tmp_path / "seg"))
    manifest = read_json(tmp_path / "seg" / "clips.json")
    assert {c["source"] for c in manifest["clips"]} == {str(audio / "good.wav")}
    skipped = {Path(s["source"]).name: s["reason"] for s in manifest["skipped"]}
    assert skipped == {name: f"not read: {reason}" for name, reason in reasons.items()}
    assert f"skip: {os.fsencode(CASES['fifo'][0]).decode()}: not read: not a regular file (a FIFO)" in proc.stdout
