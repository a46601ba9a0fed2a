"""``python -m f5guard.recipe.segment --inventory FILE --out DIR``: cut each source into speech clips with Silero VAD.

Every decodable source of the inventory is decoded once at ``--sample-rate`` (mono), Silero VAD finds its speech
(at 16 kHz, regions of at least ``--min-speech-s`` separated by at least ``--min-silence-s`` of silence), and the
regions become clips within [--min-clip-s, --max-clip-s] (F5-TTS trains on 0.3-30 s only): a longer region is
cut at its quietest point before the limit, and the cut is reported. Clips are mono PCM16 wavs
``DIR/clips/<source stem>.<sha8>__<nnnn>.wav`` (the content hash keeps same-named sources in different folders
apart), each published atomically. Item = one source, recorded in ``DIR/segments.jsonl`` under its sha256 once all
its clips are written: a killed run's finished sources are not cut again, and a changed source (new sha) is.
Sources that left the inventory leave the manifest and their clips are deleted. ``DIR/clips.json`` is written
last.

Exit codes: 0 done; 1 failed (I/O); 2 bad arguments, unreadable inventory, or no speech at all.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from f5guard.itemprogress import ItemProgress
from f5guard.recipe.audio import AudioDecodeError, load_mono, resample, write_wav
from f5guard.recipe.cliplan import Plan, Span, plan_clips
from f5guard.recipe.ledger import Ledger, Record
from f5guard.recipe.manifests import CLIPS, CLIPS_DIR, read_inventory, retract, write_clips
from f5guard.recipe.options import SEGMENT, add_flags
from f5guard.recipe.stagecli import BadInput, pick_device, run_entry, say, signature
from f5guard.regularfiles import shown

if TYPE_CHECKING:
    import torch

PROG = "f5guard.recipe.segment"
LEDGER = "segments.jsonl"
VAD_RATE = 16000
PAD_MS = 100  # speech kept either side of a region: soft onsets and final consonants survive the cut
# "|" would split a metadata.csv row; path separators and control characters make bad file names
_UNSAFE = re.compile(r"[\x00-\x1f\x7f|/\\]+")


@dataclass(frozen=True)
class Params:
    """What a source's clips depend on, besides its bytes."""

    min_speech_s: float
    min_silence_s: float
    max_clip_s: float
    min_clip_s: float
    sample_rate: int
    threshold: float

    def signature(self) -> str:
        return signature({**self.__dict__, "pad_ms": PAD_MS, "v": 1})


def clip_stem(name: str, sha: str) -> str:
    """A file-system- and CSV-safe stem for a source's clips, unique per content."""
    stem = _UNSAFE.sub("_", shown(Path(name).stem)).strip(" .") or "audio"  # shown: always encodable
    while len(stem.encode("utf-8")) > 150:  # file names are limited to 255 bytes; Vietnamese letters take 2-3
        stem = stem[:-1]
    return f"{stem.rstrip(' .')}.{sha[:8]}"


class Segmenter:
    """Silero VAD loaded once per run, and the cutting of one source into clips."""

    def __init__(self, params: Params, device: str, clips_dir: Path) -> None:
        import torch
        from silero_vad import load_silero_vad  # type: ignore[import-untyped,unused-ignore]

        self.params = params
        self.device = device
        self.clips_dir = clips_dir
        self.model = load_silero_vad().to(torch.device(device))

    def speech(self, wav16: torch.Tensor) -> list[Span]:
        """Silero VAD speech regions, in seconds."""
        from silero_vad import get_speech_timestamps  # type: ignore[import-untyped,unused-ignore]

        p = self.params
        stamps = get_speech_timestamps(
            wav16.to(self.device),
            self.model,
            threshold=p.threshold,
            sampling_rate=VAD_RATE,
            min_speech_duration_ms=int(p.min_speech_s * 1000),
            min_silence_duration_ms=int(p.min_silence_s * 1000),
            speech_pad_ms=PAD_MS,
        )
        return [Span(s["start"] / VAD_RATE, s["end"] / VAD_RATE) for s in stamps]

    def cut(self, source: Path, stem: str) -> tuple[list[dict[str, Any]], Plan, float]:
        """Write the clips of one source; (clip records, plan, source duration)."""
        p = self.params
        wav = load_mono(source, p.sample_rate)
        wav16 = resample(wav, p.sample_rate, VAD_RATE)
        plan = plan_clips(
            self.speech(wav16),
            min_clip=p.min_clip_s,
            max_clip=p.max_clip_s,
            quietest=lambda lo, hi: quietest(wav16, VAD_RATE, lo, hi),
        )
        records = []
        total = wav.numel()
        longest = int(p.max_clip_s * p.sample_rate)  # rounding never adds the sample that F5-TTS would reject
        for i, span in enumerate(plan.clips, start=1):
            a = max(0, round(span.start * p.sample_rate))
            b = min(total, round(span.end * p.sample_rate), a + longest)
            name = f"{stem}__{i:04d}.wav"
            write_wav(self.clips_dir / name, wav[a:b], p.sample_rate)
            records.append({
                "file": name,
                "start_s": round(a / p.sample_rate, 3),
                "end_s": round(b / p.sample_rate, 3),
                "duration_s": round((b - a) / p.sample_rate, 3),
            })  # fmt: skip
        return records, plan, total / p.sample_rate


def quietest(wav: torch.Tensor, rate: int, lo: float, hi: float) -> tuple[float, float]:
    """The quietest moment between lo and hi seconds (50 ms windows, 10 ms steps) and its level in dBFS.

    When the quietest level lasts (a pause), the cut goes to the middle of that stretch, not its first frame.
    """
    import torch

    hop, win = rate // 100, rate // 20
    a = max(0, int(lo * rate) - win // 2)
    b = min(wav.numel(), int(hi * rate) + win // 2)
    piece = wav[a:b].float().cpu()
    if piece.numel() < win:
        return (lo + hi) / 2, float("nan")
    energy = piece.unfold(0, win, hop).pow(2).mean(dim=1)
    i = int(torch.argmin(energy))
    quiet = (energy <= energy[i] * 2 + 1e-10).tolist()  # within 3 dB of the minimum
    first = last = i
    while first > 0 and quiet[first - 1]:
        first -= 1
    while last < len(quiet) - 1 and quiet[last + 1]:
        last += 1
    level = 10 * torch.log10(energy[i] + 1e-12).item()
    return (a + (first + last) // 2 * hop + win // 2) / rate, level


def _select(files: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The sources to cut (decodable, each content once) and the skipped ones with their reasons."""
    sources: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for f in files:
        if not f["ok"] and f.get("sha256") is None:  # ingest did not read it (a FIFO, a dangling symlink...)
            reason = f"not read: {f.get('reason') or 'not readable'}"
        elif not f["ok"]:
            reason = f"corrupt: {f.get('reason') or 'does not decode'}"
        elif f["sha256"] in seen:
            reason = f"same content as {seen[f['sha256']]} (kept once)"
        else:
            seen[f["sha256"]] = f["name"]
            sources.append(f)
            continue
        skipped.append({"source": f["path"], "reason": reason})
        say(f"skip: {f['name']}: {reason}")
    return sources, skipped


class _Run:
    """One segment run over the selected sources, with its item record."""

    def __init__(self, out_dir: Path, params: Params, ledger: Ledger) -> None:
        self.clips_dir = out_dir / CLIPS_DIR
        self.params = params
        self.sig = params.signature()
        self.ledger = ledger

    def finished(self, f: dict[str, Any]) -> Record | None:
        """The ledger record of a source cut earlier with these parameters, if all its clips are still there."""
        rec = self.ledger.get(f["sha256"])
        if rec is None or rec.get("sig") != self.sig:
            return None
        if any(not (self.clips_dir / c["file"]).is_file() for c in rec["clips"]):
            say(f"redo: {f['name']}: clips of an earlier run are missing")
            return None
        return rec

    def cut_all(self, todo: list[dict[str, Any]], done: int, device: str, skipped: list[dict[str, str]]) -> None:
        if not todo:
            return
        segmenter = Segmenter(self.params, device, self.clips_dir)
        with ItemProgress(total=done + len(todo), done=done) as progress:
            for f in todo:
                try:
                    clips, plan, duration = segmenter.cut(Path(f["path"]), clip_stem(f["name"], f["sha256"]))
                except AudioDecodeError as err:
                    skipped.append({"source": f["path"], "reason": f"does not decode now: {err.reason}"})
                    say(f"skip: {f['name']}: does not decode now: {err.reason}")
                else:
                    for note in plan.notes:
                        say(f"{f['name']}: {note}")
                    self.ledger.append(f["sha256"], {"sig": self.sig, "name": f["name"], "source": f["path"],
                                                     "clips": clips})  # fmt: skip
                    speech = sum(c["duration_s"] for c in clips)
                    say(f"cut: {f['name']}: {len(clips)} clips, {speech:.1f} s of speech in {duration:.1f} s")
                progress.advance()

    def manifest(self, sources: list[dict[str, Any]], skipped: list[dict[str, str]]) -> list[dict[str, Any]]:
        """The clips of every source recorded with these parameters, in inventory order; compacts the ledger."""
        out: list[dict[str, Any]] = []
        keep: dict[str, Record] = {}
        for f in sources:
            rec = self.ledger.get(f["sha256"])
            if rec is None or rec.get("sig") != self.sig:
                continue  # did not decode now: already listed in skipped
            keep[f["sha256"]] = rec
            if not rec["clips"]:
                skipped.append({"source": f["path"], "reason": "no speech found"})
                say(f"skip: {f['name']}: no speech found (VAD threshold {self.params.threshold:g})")
            out.extend(
                {"path": str(self.clips_dir / c["file"]), "duration_s": c["duration_s"], "source": f["path"],
                 "start_s": c["start_s"], "end_s": c["end_s"]}
                for c in rec["clips"]
            )  # fmt: skip
        self.ledger.compact(keep)
        return out


def segment(inventory: Path, out_dir: Path, params: Params, device_choice: str) -> int:
    try:
        plan_clips([], min_clip=params.min_clip_s, max_clip=params.max_clip_s, quietest=lambda a, b: (a, 0.0))
    except ValueError as err:
        raise BadInput(f"--min-clip-s/--max-clip-s: {err}") from err
    sources, skipped = _select(read_inventory(inventory))
    (out_dir / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
    retract(out_dir / CLIPS)  # not done until this run publishes it again
    with Ledger(out_dir / LEDGER) as ledger:
        run = _Run(out_dir, params, ledger)
        todo = [f for f in sources if run.finished(f) is None]
        say(f"segment: {len(sources)} sources, {len(sources) - len(todo)} already cut, {len(todo)} to cut")
        run.cut_all(todo, len(sources) - len(todo), _vad_device(device_choice) if todo else "cpu", skipped)
        clips = run.manifest(sources, skipped)
    if not clips:
        raise BadInput(f"inventory {inventory}: no speech clips in any of its {len(sources)} decodable sources")
    write_clips(out_dir / CLIPS, clips, skipped)
    removed = _remove_orphans(out_dir / CLIPS_DIR, {Path(c["path"]).name for c in clips})
    hours = sum(c["duration_s"] for c in clips) / 3600
    sourced = len({c["source"] for c in clips})
    say(
        f"segment: done: {len(clips)} clips ({hours:.2f} h) from {sourced} sources, {len(skipped)} skipped"
        + (f", {removed} old clips removed" if removed else "")
        + f" -> {out_dir / CLIPS}"
    )
    return 0


def _vad_device(choice: str) -> str:
    """Silero VAD scores one 32 ms window at a time: latency-bound, a GPU only adds transfers, so ``auto`` is CPU."""
    return "cpu" if choice == "auto" else pick_device(choice)


def _remove_orphans(clips_dir: Path, wanted: set[str]) -> int:
    """Delete clips no source of the manifest owns (removed or changed sources, a killed run's leftovers)."""
    removed = 0
    for entry in os.scandir(clips_dir):
        if entry.is_file() and entry.name not in wanted:
            Path(entry.path).unlink(missing_ok=True)
            removed += entry.name.endswith(".wav")
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", required=True, type=Path, help="inventory.json from f5guard.recipe.ingest")
    parser.add_argument("--out", required=True, type=Path, help="output folder on home (clips/, clips.json)")
    add_flags(parser, SEGMENT)
    args = parser.parse_args(argv)
    if args.sample_rate < 8000 or not 0 < args.threshold < 1 or args.min_speech_s < 0 or args.min_silence_s < 0:
        parser.error("need --sample-rate >= 8000, 0 < --threshold < 1, non-negative --min-speech-s/--min-silence-s")
    params = Params(
        min_speech_s=args.min_speech_s,
        min_silence_s=args.min_silence_s,
        max_clip_s=args.max_clip_s,
        min_clip_s=args.min_clip_s,
        sample_rate=args.sample_rate,
        threshold=args.threshold,
    )
    inventory = Path(os.path.abspath(args.inventory))
    out_dir = Path(os.path.abspath(args.out))
    return run_entry(PROG, lambda: segment(inventory, out_dir, params, args.device))


if __name__ == "__main__":
    sys.exit(main())
