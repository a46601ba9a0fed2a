"""The JSON documents one recipe stage hands the next: the inventory (ingest, separate → separate, segment) and
the clips manifest (segment → transcribe).

Read in one place so a missing, half-written or foreign file is one BadInput line that names the file and the
stage that makes it, never a KeyError halfway through a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from f5guard.fsutil import read_json
from f5guard.recipe.stagecli import BadInput, one_line

INVENTORY_FORMAT = 1
CLIPS_FORMAT = 1


def _items(path: Path, what: str, made_by: str, key: str, fmt: int) -> list[Any]:
    try:
        document = read_json(path)
    except FileNotFoundError:
        raise BadInput(f"{what} {path}: does not exist (run {made_by} first)") from None
    except (OSError, ValueError) as err:
        raise BadInput(f"{what} {path}: unreadable: {one_line(str(err), 160)}") from err
    items = document.get(key) if isinstance(document, dict) else None
    if not isinstance(items, list) or document.get("format") != fmt:
        raise BadInput(f"{what} {path}: not an f5guard {what} (format {fmt}, a {key} list)")
    return items


def read_inventory(path: Path) -> list[dict[str, Any]]:
    """The ``files`` of an ingest or separate inventory: each with path, name and ok, and a sha256 when ok."""
    files = _items(path, "inventory", "the ingest stage", "files", INVENTORY_FORMAT)
    for entry in files:
        if (
            not isinstance(entry, dict)
            or not all(isinstance(entry.get(k), str) for k in ("path", "name"))
            or not isinstance(entry.get("ok"), bool)
        ):
            raise BadInput(f"inventory {path}: an entry without path, name and ok: {one_line(repr(entry), 120)}")
        if entry["ok"] and not isinstance(entry.get("sha256"), str):
            raise BadInput(f"inventory {path}: {entry['name']} has no sha256")
    return files


def read_clips(path: Path) -> list[str]:
    """The clip paths of a clips manifest, each once, in its order."""
    clips = _items(path, "clips manifest", "the segment stage", "clips", CLIPS_FORMAT)
    if not all(isinstance(c, dict) and isinstance(c.get("path"), str) for c in clips):
        raise BadInput(f"clips manifest {path}: a clip without a path")
    if not clips:
        raise BadInput(f"clips manifest {path}: lists no clips")
    return list(dict.fromkeys(c["path"] for c in clips))  # a path listed twice is one row
