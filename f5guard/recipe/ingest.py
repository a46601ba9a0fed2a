"""``python -m f5guard.recipe.ingest --audio DIR --out DIR``: inventory a speaker's audio, hashed and probed.

Lists every audio file under DIR (wav mp3 m4a flac ogg opus aac wma webm, any case, recursively; hidden
files skipped) with its size, mtime, content sha256, duration and whether it decodes. A corrupt file is listed
with ``"ok": false`` and its reason, and reported; the rest goes on. Hashing Drive files is slow, so a file
whose size and mtime_ns are unchanged reuses the previous run's hash and probe (from the previous inventory,
or from the item record ``OUT/ingest.jsonl`` of a killed run). Publishes ``OUT/inventory.json`` last.

Exit codes: 0 done; 1 failed (I/O); 2 audio folder missing, empty, or without a single decodable file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from f5guard.itemprogress import ItemProgress
from f5guard.recipe.audio import AUDIO_EXTENSIONS, AudioDecodeError, is_audio_name, load_mono
from f5guard.recipe.ledger import Ledger, Record
from f5guard.recipe.manifests import INVENTORY, earlier_files, retract, write_inventory
from f5guard.recipe.stagecli import BadInput, run_entry, say

PROG = "f5guard.recipe.ingest"
LEDGER = "ingest.jsonl"
_PROBE_RATE = 16000  # decoding at a low rate is enough to prove the file decodes and to time it
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Found:
    """One audio file under the audio folder, as stat saw it."""

    path: Path
    name: str  # relative to the audio folder, with "/" separators
    size: int
    mtime_ns: int

    @property
    def cache_key(self) -> str:
        return f"{self.name}\0{self.size}\0{self.mtime_ns}"


def find_audio(audio_dir: Path, exclude: Path | None = None) -> tuple[list[Found], int]:
    """Audio files under ``audio_dir`` sorted by name, and how many hidden entries were passed over."""
    found: list[Found] = []
    hidden = 0
    for root, dirs, files in os.walk(audio_dir):
        kept_dirs = []
        for d in sorted(dirs):
            full = Path(root, d)
            if d.startswith(".") or (exclude is not None and full == exclude):
                hidden += d.startswith(".")
                continue
            kept_dirs.append(d)
        dirs[:] = kept_dirs
        for name in files:
            if not is_audio_name(name):
                continue
            if name.startswith("."):  # macOS "._x.mp3" resource forks, editors' temp files
                hidden += 1
                continue
            full = Path(root, name)
            st = full.stat()
            found.append(Found(full, full.relative_to(audio_dir).as_posix(), st.st_size, st.st_mtime_ns))
    found.sort(key=lambda f: f.name)
    return found, hidden


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def probe(path: Path) -> tuple[float | None, str | None]:
    """(duration_s, None) for a decodable file, (None, reason) for a corrupt one; I/O errors propagate."""
    try:
        samples = load_mono(path, _PROBE_RATE)
    except AudioDecodeError as err:
        return None, err.reason
    return round(samples.numel() / _PROBE_RATE, 3), None


def _previous(out_dir: Path) -> dict[str, Record]:
    """Cache entries from the previous inventory (if readable), keyed like the item record."""
    cache: dict[str, Record] = {}
    for entry in earlier_files(out_dir / INVENTORY):
        try:
            key = f"{entry['name']}\0{int(entry['size'])}\0{int(entry['mtime_ns'])}"
        except (KeyError, TypeError, ValueError):
            continue
        if isinstance(entry.get("sha256"), str):
            cache[key] = entry
    return cache


def _entry(found: Found, sha: str, duration: float | None, reason: str | None) -> dict[str, Any]:
    return {
        "path": str(found.path),
        "name": found.name,
        "size": found.size,
        "mtime_ns": found.mtime_ns,
        "sha256": sha,
        "duration_s": duration,
        "ok": reason is None,
        "reason": reason,
    }


def ingest(audio_dir: Path, out_dir: Path) -> int:
    if not audio_dir.is_dir():
        raise BadInput(f"audio folder {audio_dir}: does not exist or is not a folder")
    found, hidden = find_audio(audio_dir, exclude=out_dir)
    if not found:
        kinds = " ".join(sorted(e.lstrip(".") for e in AUDIO_EXTENSIONS))
        raise BadInput(f"audio folder {audio_dir}: no audio files in it ({kinds})")
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = _previous(out_dir)
    retract(out_dir / INVENTORY)  # from here on this stage is not done until it says so
    say(f"ingest: {len(found)} audio files under {audio_dir}" + (f" ({hidden} hidden skipped)" if hidden else ""))

    entries: list[dict[str, Any]] = []
    with Ledger(out_dir / LEDGER) as ledger:
        cache.update(ledger.done)
        by_sha = {e["sha256"]: e for e in cache.values() if isinstance(e.get("sha256"), str)}
        reused = sum(1 for f in found if f.cache_key in cache)
        hashed = 0
        with ItemProgress(total=len(found), done=reused) as progress:
            for f in found:
                cached = cache.get(f.cache_key)
                if cached is not None:
                    entry = _entry(f, cached["sha256"], cached.get("duration_s"), cached.get("reason"))
                else:
                    sha = sha256_file(f.path)
                    hashed += 1
                    same = by_sha.get(sha)  # a touched or moved file: same bytes, same probe
                    if same is not None:
                        duration, reason = same.get("duration_s"), same.get("reason")
                    else:
                        duration, reason = probe(f.path)
                    entry = _entry(f, sha, duration, reason)
                    ledger.append(f.cache_key, entry)
                    by_sha[sha] = entry
                    progress.advance()
                if not entry["ok"]:
                    say(f"corrupt: {f.name}: {entry['reason']} (listed with ok=false, left out of the recipe)")
                entries.append(entry)
        ledger.compact({f.cache_key: e for f, e in zip(found, entries, strict=True)})

    good = [e for e in entries if e["ok"]]
    if not good:
        raise BadInput(f"audio folder {audio_dir}: none of its {len(entries)} audio files decodes")
    write_inventory(out_dir / INVENTORY, audio_dir, entries)
    hours = sum(e["duration_s"] or 0.0 for e in good) / 3600
    say(
        f"ingest: done: {len(good)} ok ({hours:.2f} h), {len(entries) - len(good)} corrupt; "
        f"{hashed} hashed, {len(entries) - hashed} unchanged (hash reused) -> {out_dir / INVENTORY}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("--audio", required=True, type=Path, help="the speaker's audio folder (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="output folder on home; gets inventory.json")
    args = parser.parse_args(argv)
    audio_dir = Path(os.path.abspath(args.audio))
    out_dir = Path(os.path.abspath(args.out))
    return run_entry(PROG, lambda: ingest(audio_dir, out_dir))


if __name__ == "__main__":
    sys.exit(main())
