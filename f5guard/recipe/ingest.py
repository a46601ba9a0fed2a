"""``python -m f5guard.recipe.ingest --audio DIR --out DIR``: inventory a speaker's audio, hashed and probed.

Lists every audio file under DIR (wav mp3 m4a flac ogg opus aac wma webm, any case, recursively; hidden
files skipped) with its size, mtime, content sha256, duration and whether it decodes. A corrupt file is listed
with ``"ok": false`` and its reason, and reported; the rest goes on. So is a file that is never read, with
``"sha256": null``: one that is not a regular file (a FIFO, socket or device), a dangling symlink, a symlink
loop, an unreadable file, and a name that is not valid UTF-8 (listed with its bad bytes as ``\\xNN`` escapes:
the decoders and later stages take text paths; rename it to use it). Hashing Drive files is slow, so a file
whose size and mtime_ns are unchanged reuses the previous run's hash and probe (from the previous inventory,
or from the item record ``OUT/ingest.jsonl`` of a killed run). Publishes ``OUT/inventory.json`` last.

Exit codes: 0 done; 1 failed (I/O that a retry may fix); 2 audio folder missing, empty, or without a single
decodable file.
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
from f5guard.regularfiles import Unreadable, check, is_shown_as_is, open_regular, problem, shown

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


@dataclass(frozen=True)
class Skipped:
    """An audio file that is not read, and why (listed in the inventory with ok=false, like a corrupt one)."""

    path: Path
    name: str
    reason: str

    def entry(self) -> dict[str, Any]:
        return {
            "path": shown(self.path),
            "name": self.name,
            "size": None,
            "mtime_ns": None,
            "sha256": None,
            "duration_s": None,
            "ok": False,
            "reason": self.reason,
        }


def find_audio(audio_dir: Path, exclude: Path | None = None) -> tuple[list[Found], list[Skipped], int]:
    """Audio files under ``audio_dir`` sorted by name, those that are not read (with why), and how many hidden
    entries were passed over. An error a retry may fix (Drive not answering) fails the listing."""
    found: list[Found] = []
    skipped: list[Skipped] = []
    hidden = 0

    def unlisted(err: OSError) -> None:
        reason = problem(err.filename, err) if err.filename else None
        if reason is None or Path(err.filename) == audio_dir:
            raise err
        say(f"skipped folder: {shown(Path(err.filename).relative_to(audio_dir))}: {reason}")

    for root, dirs, files in os.walk(audio_dir, onerror=unlisted):
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
            rel = shown(full.relative_to(audio_dir).as_posix())
            if not is_shown_as_is(full):
                skipped.append(Skipped(full, rel, "file name is not valid UTF-8 (rename it to use it)"))
                continue
            try:
                st = check(full)
            except Unreadable as err:
                skipped.append(Skipped(full, rel, err.reason))
                continue
            found.append(Found(full, rel, st.st_size, st.st_mtime_ns))
    found.sort(key=lambda f: f.name)
    skipped.sort(key=lambda f: f.name)
    return found, skipped, hidden


def sha256_file(path: Path) -> str:
    """The content hash; Unreadable (an OSError) for a file that is not read, see regularfiles."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:
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


def _read(
    found: list[Found], skipped: list[Skipped], ledger_path: Path, cache: dict[str, Record]
) -> tuple[list[dict[str, Any]], int]:
    """The entries of the files read (hashed and probed one by one, each recorded before the next, or reused
    from ``cache``) and how many were hashed; a file that turned out not to be readable joins ``skipped``."""
    read: dict[str, dict[str, Any]] = {}  # cache key -> entry
    hashed = 0
    with Ledger(ledger_path) as ledger:
        cache.update(ledger.done)
        by_sha = {e["sha256"]: e for e in cache.values() if isinstance(e.get("sha256"), str)}
        reused = sum(1 for f in found if f.cache_key in cache)
        with ItemProgress(total=len(found), done=reused) as progress:
            for f in found:
                cached = cache.get(f.cache_key)
                if cached is not None:
                    entry = _entry(f, cached["sha256"], cached.get("duration_s"), cached.get("reason"))
                else:
                    try:
                        sha = sha256_file(f.path)
                    except Unreadable as err:  # swapped for a FIFO, or unreadable, since it was listed
                        skipped.append(Skipped(f.path, f.name, err.reason))
                        progress.advance()
                        continue
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
                read[f.cache_key] = entry
        ledger.compact(read)
    return list(read.values()), hashed


def ingest(audio_dir: Path, out_dir: Path) -> int:
    if not audio_dir.is_dir():
        raise BadInput(f"audio folder {shown(audio_dir)}: does not exist or is not a folder")
    found, skipped, hidden = find_audio(audio_dir, exclude=out_dir)
    if not found and not skipped:
        kinds = " ".join(sorted(e.lstrip(".") for e in AUDIO_EXTENSIONS))
        raise BadInput(f"audio folder {shown(audio_dir)}: no audio files in it ({kinds})")
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = _previous(out_dir)
    retract(out_dir / INVENTORY)  # from here on this stage is not done until it says so
    say(
        f"ingest: {len(found) + len(skipped)} audio files under {shown(audio_dir)}"
        + (f" ({hidden} hidden skipped)" if hidden else "")
    )

    read, hashed = _read(found, skipped, out_dir / LEDGER, cache)
    for item in skipped:
        say(f"skipped: {item.name}: {item.reason} (listed with ok=false, left out of the recipe)")
    entries = sorted([*read, *(item.entry() for item in skipped)], key=lambda e: str(e["name"]))

    good = [e for e in entries if e["ok"]]
    corrupt = len(entries) - len(good) - len(skipped)
    if not good:
        raise BadInput(
            f"audio folder {shown(audio_dir)}: none of its {len(entries)} audio files decodes "
            f"({corrupt} corrupt, {len(skipped)} not read)"
        )
    write_inventory(out_dir / INVENTORY, audio_dir, entries)
    hours = sum(e["duration_s"] or 0.0 for e in good) / 3600
    say(
        f"ingest: done: {len(good)} ok ({hours:.2f} h), {corrupt} corrupt, {len(skipped)} not read; "
        f"{hashed} hashed, {len(read) - hashed} unchanged (hash reused) -> {out_dir / INVENTORY}"
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
