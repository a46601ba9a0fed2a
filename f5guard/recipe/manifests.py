"""The JSON documents a recipe stage publishes last: the inventory (ingest, separate → separate, segment), the
clips manifest (segment → transcribe) and the ``manifest.json`` that says transcribe, prepare or pretrained is done.

One owner for their names, formats and checks, so a missing, half-written or foreign file is one BadInput line
that names the file and the stage that makes it, never a KeyError halfway through a run. Torch-free: the
daemon's stage table (``recipe.kinds``) takes the file names from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from f5guard.fsutil import atomic_write_json, read_json
from f5guard.recipe.stagecli import BadInput, one_line

INVENTORY = "inventory.json"
CLIPS = "clips.json"
CLIPS_DIR = "clips"  # segment's wavs, next to its clips manifest
METADATA = "metadata.csv"  # transcribe -> prepare: F5-TTS's audio_file|text, written by transcribe.metadata_csv
MANIFEST = "manifest.json"
INVENTORY_FORMAT = 1
CLIPS_FORMAT = 1
MANIFEST_FORMAT = 1


def retract(path: Path) -> None:
    """Remove a published document before the stage works again: until it publishes anew, it is not done."""
    path.unlink(missing_ok=True)


def write_inventory(path: Path, audio_dir: Path, files: list[dict[str, Any]]) -> None:
    atomic_write_json(path, {"format": INVENTORY_FORMAT, "audio_dir": str(audio_dir), "files": files})


def write_clips(path: Path, clips: list[dict[str, Any]], skipped: list[dict[str, str]]) -> None:
    atomic_write_json(path, {"format": CLIPS_FORMAT, "clips": clips, "skipped": skipped})


def write_manifest(path: Path, fields: Mapping[str, Any]) -> None:
    """A stage's closing ``manifest.json``: what it made, written last."""
    atomic_write_json(path, {**fields, "format": MANIFEST_FORMAT})


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


def earlier_files(path: Path) -> list[Any]:
    """The ``files`` of a stage's own earlier inventory, for reuse: [] when there is none or it is unreadable
    (reuse is an optimisation; each entry is still checked by the caller)."""
    try:
        document = read_json(path)
    except (OSError, ValueError):
        return []
    files = document.get("files") if isinstance(document, dict) else None
    return files if isinstance(files, list) else []


def read_clips(path: Path) -> list[str]:
    """The clip paths of a clips manifest, each once, in its order."""
    clips = _items(path, "clips manifest", "the segment stage", "clips", CLIPS_FORMAT)
    if not all(isinstance(c, dict) and isinstance(c.get("path"), str) for c in clips):
        raise BadInput(f"clips manifest {path}: a clip without a path")
    if not clips:
        raise BadInput(f"clips manifest {path}: lists no clips")
    return list(dict.fromkeys(c["path"] for c in clips))  # a path listed twice is one row


def read_manifest(path: Path) -> dict[str, Any] | None:
    """A closing ``manifest.json``, or None when it is missing, unreadable or not an object (the stage is then
    not done)."""
    try:
        document = read_json(path)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None
