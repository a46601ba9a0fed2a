"""``python -m f5guard.recipe.separate --inventory FILE --out DIR [--model htdemucs|PATH] [--device auto]``:
Demucs vocals extraction, for recordings with music or noise under the voice (optional stage).

Reads an ingest inventory, writes ``DIR/vocals/<name>.wav`` (mono PCM16 at the model's rate) per usable source,
each published atomically and recorded in ``DIR/separate.jsonl``: a rerun skips a source whose vocals exist for
the same source sha256 and parameters. Writes ``DIR/inventory.json`` last, in ingest's format (the vocals'
paths and hashes, plus ``source_sha256``), so the segment stage reads either. The model is loaded once, and
only when there is something to separate.

Exit codes: 0 done; 1 failed (model unavailable, I/O); 2 bad inventory or arguments, or nothing usable in it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from f5guard.fsutil import atomic_write_bytes
from f5guard.itemprogress import ItemProgress
from f5guard.recipe.audio import wav_bytes as pcm16_wav
from f5guard.recipe.demucs_model import check_spec, load_separator, model_identity
from f5guard.recipe.ledger import Ledger, Record
from f5guard.recipe.manifests import INVENTORY, read_inventory, retract, write_inventory
from f5guard.recipe.options import SEPARATE, SEPARATE_MODEL, add_flags
from f5guard.recipe.stagecli import BadInput, one_line, pick_device, run_entry, say, signature

PROG = "f5guard.recipe.separate"
LEDGER = "separate.jsonl"
VOCALS = "vocals"
CHUNK_S = 600.0  # separate long recordings in 10-minute windows: all four stems of an hour would need ~5 GB
FADE_S = 2.0  # context on each side of a window, cross-faded with the neighbour: no seam at the cut
SEED = 0  # demucs shifts the input by a random offset: seeded, the same argv gives the same vocals


@dataclass(frozen=True)
class Source:
    """One usable inventory entry and where its vocals go."""

    entry: dict[str, Any]
    vocals_name: str  # relative to DIR/vocals, "/" separators

    @property
    def name(self) -> str:
        return str(self.entry["name"])

    @property
    def sha256(self) -> str:
        return str(self.entry["sha256"])


def vocals_names(entries: list[dict[str, Any]]) -> dict[str, str]:
    """Source name -> vocals file name: the suffix replaced by .wav, kept apart when two sources would meet
    ("a.mp3" and "a.m4a" -> "a.mp3.wav", "a.m4a.wav"; still equal -> the content hash decides)."""

    def safe(name: str) -> PurePosixPath:
        path = PurePosixPath(name)
        return PurePosixPath(path.name) if path.is_absolute() or ".." in path.parts else path

    first = {e["name"]: str(safe(e["name"]).with_suffix(".wav")) for e in entries}
    counts = collections.Counter(first.values())
    second = {n: (v if counts[v] == 1 else f"{safe(n)}.wav") for n, v in first.items()}
    counts = collections.Counter(second.values())
    by_name = {e["name"]: e for e in entries}
    return {n: (v if counts[v] == 1 else f"{safe(n)}.{by_name[n]['sha256'][:12]}.wav") for n, v in second.items()}


def _inventory_entry(source: Source, path: Path, record: Record) -> dict[str, Any]:
    st = path.stat()
    return {
        "path": str(path), "name": source.vocals_name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
        "sha256": record["sha256"], "duration_s": record["duration_s"], "ok": True, "reason": None,
        "source_sha256": source.sha256, "source_name": source.name, "source_path": source.entry["path"],
    }  # fmt: skip


def _reusable(record: Record | None, source: Source, sig: str, path: Path) -> bool:
    if record is None or record.get("source_sha256") != source.sha256 or record.get("sig") != sig:
        return False
    if record.get("name") != source.vocals_name:
        return False
    if record.get("reason"):  # these bytes did not decode last time; they will not now
        return True
    try:
        return path.stat().st_size == record.get("size")
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- audio
class DecodeFailed(ValueError):
    """This source cannot be decoded; it is listed with ok=false and the stage goes on."""


def load_mix(path: Path, sample_rate: int, channels: int) -> Any:
    """(channels, samples) float32 at the model's rate: FFmpeg (torchcodec) resamples, then torchaudio."""
    os.stat(path)  # a vanished file or an unreachable Drive is an OSError (stage fails, retried), not bad audio
    try:
        from torchcodec.decoders import AudioDecoder  # type: ignore[import-untyped]  # heavy: stage only

        decoder = AudioDecoder(str(path), sample_rate=sample_rate, num_channels=channels)
        wav = decoder.get_all_samples().data
    except (RuntimeError, ValueError) as first:
        try:
            import torchaudio  # another decoder stack: a file torchcodec refuses may still load
            from demucs.audio import convert_audio

            raw, rate = torchaudio.load(str(path))
            wav = convert_audio(raw, rate, sample_rate, channels)
        except (RuntimeError, ValueError):
            raise DecodeFailed(one_line(str(first).replace(str(path), path.name), 200)) from first
    if wav.shape[-1] == 0:
        raise DecodeFailed("no audio samples in the file")
    return wav.float().nan_to_num(0.0)


def vocals_of(separator: Any, mix: Any, device: str) -> Any:
    """Mono vocals of ``mix`` (channels, samples), window by window, normalised like demucs' own separate."""
    import torch
    from demucs.apply import apply_model

    rate = separator.samplerate
    ref = mix.mean(0)
    mean, std = ref.mean(), ref.std() + 1e-8
    total = mix.shape[-1]
    step, fade = int(CHUNK_S * rate), int(FADE_S * rate)
    out = torch.zeros(total)
    weight = torch.zeros(total)
    index = separator.sources.index("vocals")
    for start in range(0, total, step):
        a, b = max(0, start - fade), min(total, start + step + fade)
        random.seed(SEED)
        with torch.no_grad():
            stems = apply_model(separator, ((mix[:, a:b] - mean) / std)[None], device=device, shifts=1, split=True,
                                overlap=0.25, progress=False)  # fmt: skip
        vocals = (stems[0, index] * std + mean).mean(0).cpu()
        w = torch.ones(b - a)
        if a > 0:  # ramp in over the overlap with the previous window, which ramps out there
            w[: 2 * fade] = torch.linspace(0.0, 1.0, 2 * fade)
        if b < total:
            w[-2 * fade :] = torch.linspace(1.0, 0.0, 2 * fade)
        out[a:b] += vocals * w
        weight[a:b] += w
    return out / weight.clamp_min(1e-8)


def wav_bytes(samples: Any, sample_rate: int) -> bytes:
    """Mono PCM16 wav; rescaled (not clipped) when the estimate overshoots full scale, as demucs does."""
    peak = float(samples.abs().max()) if samples.numel() else 0.0
    if peak > 0.999:
        samples = samples / (peak * 1.001)
    return pcm16_wav(samples, sample_rate)


# ---------------------------------------------------------------------------------------------- the stage
def separate(inventory: Path, out: Path, model: str, device_choice: str) -> int:
    check_spec(model)
    files = read_inventory(inventory)
    usable = [e for e in files if e.get("ok")]
    for e in files:
        if not e.get("ok"):
            say(f"skipped: {e['name']}: {e.get('reason') or 'marked not ok by ingest'}")
    if not usable:
        raise BadInput(f"inventory {inventory}: none of its {len(files)} files is usable (ok: true)")
    names = vocals_names(usable)
    sources = [Source(e, names[e["name"]]) for e in usable]
    out.mkdir(parents=True, exist_ok=True)
    retract(out / INVENTORY)  # not done until it says so
    sig = signature({"model": model_identity(model), "chunk_s": CHUNK_S, "fade_s": FADE_S, "seed": SEED,
                     "shifts": 1, "overlap": 0.25, "channels": 1})  # fmt: skip
    vocals_dir = out / VOCALS
    results: dict[str, dict[str, Any]] = {}
    with Ledger(out / LEDGER) as ledger:
        todo = [s for s in sources if not _reusable(ledger.get(s.name), s, sig, vocals_dir / s.vocals_name)]
        say(f"separate: {len(sources)} sources, {len(sources) - len(todo)} already separated, {len(todo)} to do")
        separator, device = None, "cpu"
        if todo:
            device = pick_device(device_choice)
            started = time.monotonic()
            separator = load_separator(model).to(device)  # once: a bag would otherwise move per window
            say(f"model {model}: {type(separator).__name__} at {separator.samplerate} Hz on {device} "
                f"({time.monotonic() - started:.1f} s to load)")  # fmt: skip
        with ItemProgress(total=len(sources), done=len(sources) - len(todo)) as progress:
            for source in sources:
                path = vocals_dir / source.vocals_name
                if source in todo:
                    record = _separate_one(separator, source, path, sig, device, ledger)
                    progress.advance()
                else:
                    record = ledger.done[source.name]
                if record.get("reason"):
                    results[source.name] = {**source.entry, "ok": False, "reason": record["reason"]}
                else:
                    results[source.name] = _inventory_entry(source, path, record)
        _forget_stale(ledger, {s.name for s in sources}, vocals_dir)
    entries = [results[e["name"]] if e.get("ok") else e for e in files]  # the inventory's order
    good = sum(1 for e in entries if e["ok"])
    if not good:
        raise BadInput(f"inventory {inventory}: no source could be decoded for separation")
    write_inventory(out / INVENTORY, vocals_dir, entries)
    say(f"separate: done: {good} vocals files, {len(entries) - good} not usable -> {out / INVENTORY}")
    return 0


def _separate_one(separator: Any, source: Source, path: Path, sig: str, device: str, ledger: Ledger) -> Record:
    started = time.monotonic()
    base = {"source_sha256": source.sha256, "sig": sig, "name": source.vocals_name}
    try:
        mix = load_mix(Path(source.entry["path"]), separator.samplerate, separator.audio_channels)
    except DecodeFailed as err:
        record = ledger.append(source.name, {**base, "reason": f"cannot decode for separation: {err}"})
        say(f"corrupt: {source.name}: {err} (listed with ok=false)")
        return record
    vocals = vocals_of(separator, mix, device)
    data = wav_bytes(vocals, separator.samplerate)
    atomic_write_bytes(path, data)
    seconds = vocals.numel() / separator.samplerate
    took = time.monotonic() - started
    record = ledger.append(source.name, {**base, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                         "duration_s": round(seconds, 3), "reason": None})  # fmt: skip
    # said after the record is durable: a line in the log means a rerun will not redo this file
    say(f"vocals: {source.name} -> {VOCALS}/{source.vocals_name} ({seconds:.1f} s of audio in {took:.1f} s)")
    return record


def _forget_stale(ledger: Ledger, current: set[str], vocals_dir: Path) -> None:
    """Vocals of sources that left the inventory: deleted (only files this stage recorded) and forgotten."""
    keep = {k: r for k, r in ledger.done.items() if k in current}
    for key, record in ledger.done.items():
        if key not in current and isinstance(record.get("name"), str):
            stale = vocals_dir / record["name"]
            if stale.resolve().is_relative_to(vocals_dir.resolve()):
                stale.unlink(missing_ok=True)
    ledger.compact(keep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", required=True, type=Path, help="ingest's inventory.json")
    parser.add_argument("--out", required=True, type=Path, help="output folder: vocals/, inventory.json")
    add_flags(parser, [SEPARATE_MODEL, *SEPARATE])
    args = parser.parse_args(argv)
    inventory = Path(os.path.abspath(args.inventory))
    out = Path(os.path.abspath(args.out))
    return run_entry(PROG, lambda: _quiet(separate, inventory, out, args.model, args.device))


def _quiet(body: Callable[..., int], *args: Any) -> int:
    """Library warnings (demucs, torch) go to the log on stdout: stderr carries only the one-line verdict."""
    with contextlib.redirect_stderr(sys.stdout):
        return body(*args)


if __name__ == "__main__":
    sys.exit(main())
