"""Copy the work dir's logs (and the trainer's progress) to home now and then, so they survive the VM (into files of
this runtime's own). The daemon runs these copies on a thread of their own: a slow Drive never stalls its
control loop."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from f5guard.fsutil import atomic_write_bytes, fsync_dir, make_dirs


def mirror_file(src: Path, dst: Path) -> bool:
    """Copy ``src`` over ``dst`` (temp name, then rename) when its size or mtime changed; True if copied."""
    try:
        st = src.stat()
        dt = dst.stat() if dst.exists() else None
    except OSError:
        return False
    if dt is not None and dt.st_size == st.st_size and int(dt.st_mtime) == int(st.st_mtime):
        return False
    make_dirs(dst.parent)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return True


def mirror_tree(source: Path, target: Path) -> int:
    """Mirror every file under ``source``; returns how many were copied."""
    copied = 0
    for root, _dirs, names in os.walk(source):
        rel = Path(root).relative_to(source)
        copied_here = sum(mirror_file(Path(root) / name, target / rel / name) for name in names)
        if copied_here:
            fsync_dir(target / rel)
        copied += copied_here
    return copied


SEGMENT_BYTES = 1 << 20  # a segment on home is rewritten while it fills, then never again


class AppendMirror:
    """Copies an append-only JSON-lines file (the trainer's progress) to home as it grows, in segments named
    ``<stem>-NNN.jsonl``: each pass writes only the segment still filling (at most SEGMENT_BYTES), never the
    whole history again (Drive re-uploads every rewritten file whole), and only whole lines."""

    def __init__(self, source: Path, folder: Path, stem: str, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.source, self.folder, self.stem = source, folder, stem
        self.segment_bytes = segment_bytes
        self.offset = 0  # how far the source is copied
        self.index = 0  # the segment filling now
        self.current = bytearray()  # its content (the source may be rotated or gone: home keeps what was copied)
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file being copied

    def segment(self, index: int) -> Path:
        return self.folder / f"{self.stem}-{index:03d}.jsonl"

    def step(self) -> int:
        """Copy what was appended since the last step; returns the bytes copied (0: nothing new)."""
        try:
            st = self.source.stat()
        except FileNotFoundError:
            return 0
        size, identity = st.st_size, (st.st_dev, st.st_ino)
        if identity != self._identity or size < self.offset:  # another file now (a new work dir): a new segment
            if self._identity is not None:
                self.offset = 0
                self._next_segment()
            self._identity = identity
        if size == self.offset:
            return 0
        with self.source.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read(size - self.offset)
        data = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next step
        if not data:
            return 0
        for line in data.splitlines(keepends=True):
            if self.current and len(self.current) + len(line) > self.segment_bytes:
                atomic_write_bytes(self.segment(self.index), bytes(self.current))  # complete: its last write
                self._next_segment()
            self.current += line
        atomic_write_bytes(self.segment(self.index), bytes(self.current))
        self.offset += len(data)
        return len(data)

    def _next_segment(self) -> None:
        if self.current:
            self.index += 1
            self.current = bytearray()


class Mirrorer:
    """The thread that runs ``copy`` whenever asked, and once more when closed: Drive may block a copy for
    minutes, and that must stall nothing but the copies."""

    def __init__(self, copy: Callable[[], None]) -> None:
        self._copy = copy
        self._asked = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="f5guard-mirror", daemon=True)
            self._thread.start()
        self._asked.set()

    def close(self, timeout_s: float) -> bool:
        """A last copy of everything, waited for up to ``timeout_s``; False when it did not end in time."""
        self._closing = True
        self.request()
        assert self._thread is not None
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            self._asked.wait()
            self._asked.clear()
            closing = self._closing
            self._copy()
            if closing:
                return
