"""Copy the work dir's logs (and the trainer's progress) to home now and then, so they survive the VM (into files of
this runtime's own)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from f5guard.fsutil import fsync_dir, make_dirs


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
