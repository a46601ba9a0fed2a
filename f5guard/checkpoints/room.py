"""Whether home can hold what training will put there: the next checkpoint plus the one kept while it uploads.

On Drive the previous checkpoint stays until its successor is in the cloud (retention by evidence), so the
mount holds two full checkpoints at once (5.4 GB each for F5TTS_v1_Base): `f5guard start` refuses in one line
when there is no room for that, rather than training for hours into a sync that cannot publish.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from f5guard.checkpoints.durable import list_durable
from f5guard.checkpoints.inspect import scan_dir
from f5guard.checkpoints.publish import SPACE_MARGIN, size_words
from f5guard.cloud.detect import existing


def room_problem(home_ckpts: Path, local_ckpts: Path) -> str | None:
    """One line when home cannot hold the next checkpoint plus the one kept; None when it can, or when no
    checkpoint exists yet to tell the size by (a first run: the sync says so if the first one does not fit)."""
    durables = list_durable(home_ckpts)
    local = [c.size for c in scan_dir(local_ckpts).valid if c.kind != "pretrained"]
    sizes = [d.size for d in durables[-1:]] + local
    if not sizes:
        return None
    size = max(sizes)  # the next one is as large as the largest seen (F5-TTS's are all alike)
    kept = durables[-1].size if durables else 0  # already on home: it only has to stay
    need = size + (0 if durables else size) + SPACE_MARGIN  # none kept yet: the first one will be
    try:
        free = shutil.disk_usage(existing(home_ckpts)).free
    except OSError as err:
        return f"cannot read the free space of {home_ckpts}: {err.strerror or err}"
    if free >= need:
        return None
    have = f"keeps {size_words(kept)} there and " if kept else ""
    return (f"home {home_ckpts} {have}has {size_words(free)} free, but the next checkpoint ({size_words(size)}) "
            f"while the one kept stays needs {size_words(need)} free: free space on Drive (files deleted through "
            "the mount sit in its trash until emptied)")  # fmt: skip
