"""Copy the work dir's logs to home now and then, so they survive the VM (into a folder of this runtime's own)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from f5guard.fsutil import fsync_dir


def mirror_tree(source: Path, target: Path) -> int:
    """Copy files whose size or mtime changed (temp name, then rename); returns how many were copied."""
    copied = 0
    for root, _dirs, names in os.walk(source):
        rel = Path(root).relative_to(source)
        for name in names:
            src = Path(root) / name
            dst = target / rel / name
            try:
                st = src.stat()
                dt = dst.stat() if dst.exists() else None
            except OSError:
                continue
            if dt is not None and dt.st_size == st.st_size and int(dt.st_mtime) == int(st.st_mtime):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{name}.tmp")
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)
            copied += 1
        if copied:
            fsync_dir(target / rel)
    return copied
