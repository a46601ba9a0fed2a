"""Crash-safe writes: a reader sees the old complete file or the new one; a failed writer leaves no temp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from f5guard.fsutil import atomic_write_bytes, publishing


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_publishing_replaces_only_when_the_writer_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "model (Thuận).pt"
    target.write_bytes(b"old")

    def killed_mid_write() -> None:
        with publishing(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        killed_mid_write()
    assert target.read_bytes() == b"old" and _siblings(target) == [target.name]

    with publishing(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".")  # hidden, same filesystem
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # nothing visible before the block ends
    assert target.read_bytes() == b"new" and _siblings(target) == [target.name]


def test_publishing_a_hard_link_to_a_read_only_file(tmp_path: Path) -> None:
    """The pretrained staging links the user's file: fsync must not need write access to it."""
    source = tmp_path / "src.pt"
    source.write_bytes(b"weights")
    source.chmod(0o444)
    target = tmp_path / "out" / "pretrained_src.pt"
    target.parent.mkdir()
    with publishing(target, target.with_name(".pretrained_src.pt.tmp-1")) as tmp:
        os.link(source, tmp)
    assert target.read_bytes() == b"weights" and os.path.samefile(source, target)
    assert _siblings(target) == [target.name]


def test_atomic_write_bytes_creates_parents_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "state.json"
    atomic_write_bytes(target, b"{}")
    atomic_write_bytes(target, b'{"generation": 2}')
    assert target.read_bytes() == b'{"generation": 2}' and _siblings(target) == ["state.json"]
