"""A copy is named durable only if home gives back the bytes written to it; manifests say how to check them.

A file system that keeps other bytes than it was given (a flipped byte, a lost tail) is played by a write that
corrupts what reaches one file: the only part here that is not real, since no local disk does that on cue.
"""
# ruff: noqa: F811  (pytest fixtures imported from tests.sync_support come back as parameters)

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from f5guard.checkpoints import copying
from f5guard.checkpoints.copying import CHUNK, CopyMismatch, copy_fd, file_digest, file_sha256
from f5guard.checkpoints.durable import list_durable, read_manifest, restore
from f5guard.checkpoints.inspect import inspect_checkpoint
from f5guard.checkpoints.sync import CheckpointSync
from tests.sync_support import CheckpointMaker, Recorder, home_names, maker, wait_until  # noqa: F401 - fixtures

MB = 1024 * 1024


def corrupting_write(monkeypatch: pytest.MonkeyPatch, target: Callable[[str], bool], *,
                     flip_at: int | None = None, lose_from: int | None = None, times: int = 1) -> list[str]:  # fmt: skip
    """Make os.write keep other bytes than given for files ``target`` accepts (by path), ``times`` files long:
    the byte at ``flip_at`` inverted, or everything from ``lose_from`` on silently dropped. Returns the paths hit."""
    real_write = os.write
    hit: list[str] = []
    files: list[tuple[str, int]] = []  # (path, inode): a retry writes a new file under the same temp name

    def write(fd: int, data: bytes | memoryview) -> int:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return real_write(fd, data)
        key = (path, os.fstat(fd).st_ino)
        if not target(path) or (key not in files and len(files) >= times):
            return real_write(fd, data)
        start, n = os.lseek(fd, 0, os.SEEK_CUR), len(data)
        if flip_at is not None and start <= flip_at < start + n:
            changed = bytearray(data)
            changed[flip_at - start] ^= 0xFF
            if key not in files:
                files.append(key)
                hit.append(path)
            return real_write(fd, bytes(changed))
        if lose_from is not None and start + n > lose_from:
            if key not in files:
                files.append(key)
                hit.append(path)
            kept = max(0, lose_from - start)
            if kept:
                real_write(fd, bytes(data[:kept]))
            return n  # says all of it was written
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    return hit


def _source(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    return path, data


def _copy(src: Path, dst: Path, algorithm: str = copying.DIGEST) -> tuple[int, str]:
    fd = os.open(src, os.O_RDONLY)
    try:
        return copy_fd(fd, dst, algorithm=algorithm)
    finally:
        os.close(fd)


def test_a_copy_returns_its_size_and_digest(tmp_path: Path) -> None:
    """Several chunks and a partial one: the copy is identical; crc32 (new) and sha256 (old manifests) digests."""
    src, data = _source(tmp_path, 2 * CHUNK + 12345)
    assert _copy(src, tmp_path / "a") == (len(data), f"crc32:{zlib.crc32(data):08x}")
    assert _copy(src, tmp_path / "b", "sha256") == (len(data), f"sha256:{hashlib.sha256(data).hexdigest()}")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == data
    assert file_digest(tmp_path / "a") == f"crc32:{zlib.crc32(data):08x}"
    assert file_sha256(tmp_path / "a") == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").touch()
    assert _copy(tmp_path / "empty", tmp_path / "c") == (0, "crc32:00000000")


def test_a_flipped_byte_in_the_middle_of_the_copy_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, data = _source(tmp_path, 3 * CHUNK)
    hit = corrupting_write(monkeypatch, lambda p: p.endswith("/dst"), flip_at=len(data) // 2 + 3)
    with pytest.raises(CopyMismatch, match="differ from those written"):
        _copy(src, tmp_path / "dst")
    assert hit == [str(tmp_path / "dst")]


def test_a_lost_tail_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file system says it wrote everything but keeps only the first 1.5 chunks."""
    src, _ = _source(tmp_path, 2 * CHUNK + 100)
    corrupting_write(monkeypatch, lambda p: p.endswith("/dst"), lose_from=CHUNK + CHUNK // 2)
    with pytest.raises(CopyMismatch, match="short of what was written"):
        _copy(src, tmp_path / "dst")


@pytest.mark.train
def test_a_corrupted_copy_on_home_is_never_named_durable(maker: CheckpointMaker, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A byte flipped in the middle of the copy on home: refused (no manifest, temp removed, status says why),
    then the retry, written faithfully, becomes durable with the source's digest."""
    local, home = tmp_path / "ckpts", tmp_path / "home"
    local.mkdir()
    source = maker.make(local / "model_last.pt", 10, 3 * MB)
    hit = corrupting_write(monkeypatch, lambda p: p.startswith(str(home)), flip_at=source.stat().st_size // 2)
    on_home_at_error: list[list[str]] = []
    log = Recorder(lambda event, _f: on_home_at_error.append(home_names(home)) if event == "sync.error" else None)
    syncer = CheckpointSync(local, home, epoch=1, log=log, retry_max_s=0.2)
    syncer.start()
    try:
        wait_until(lambda: syncer.status().durable is not None, timeout=30, what="the retry to be durable")
    finally:
        syncer.stop()
    assert len(hit) == 1
    errors = [f["error"] for name, f in log.events if name == "sync.error"]
    assert errors and "did not verify" in errors[0] and "differ from those written" in errors[0]
    assert on_home_at_error[0] == []  # neither the corrupt copy nor a manifest stayed on home
    assert log.names().index("sync.error") < log.names().index("sync.done")
    durable = list_durable(home)[-1]
    assert durable.digest == file_digest(source) == file_digest(durable.path)
    assert durable.path.read_bytes() == source.read_bytes()


@pytest.mark.train
def test_a_manifest_from_before_crc32_still_verifies(maker: CheckpointMaker, tmp_path: Path) -> None:
    """Format-1 manifests record a bare sha256: restore checks it (and refuses a file that no longer matches)."""
    local, home = tmp_path / "ckpts", tmp_path / "home"
    local.mkdir()
    syncer = CheckpointSync(local, home, epoch=1, keep=2)
    for update in (10, 20):
        maker.make(local / "model_last.pt", update, MB)
        assert syncer.flush(30)
    for durable in list_durable(home):  # rewrite both manifests as an older f5guard wrote them
        doc = json.loads(durable.manifest.read_text())
        del doc["digest"]
        doc.update(format=1, sha256=file_sha256(durable.path))
        durable.manifest.write_text(json.dumps(doc))
    old = [read_manifest(d.manifest) for d in list_durable(home)]
    assert [d.digest.split(":")[0] if d else None for d in old] == ["sha256", "sha256"]

    restored = restore(home, tmp_path / "fresh")
    assert restored is not None and restored.update == 20
    assert inspect_checkpoint(tmp_path / "fresh" / "model_last.pt").update == 20

    newest = list_durable(home)[-1]
    with newest.path.open("r+b") as handle:  # one byte in the middle of the tensor data
        handle.seek(newest.size // 2)
        byte = handle.read(1)
        handle.seek(newest.size // 2)
        handle.write(bytes([byte[0] ^ 0x01]))
    log = Recorder()
    restored = restore(home, tmp_path / "fresh2", log=log)
    assert restored is not None and restored.update == 10
    skipped = [f["reason"] for name, f in log.events if name == "restore.skip"]
    assert len(skipped) == 1 and "differs from its manifest" in skipped[0]
