"""``python -m f5guard.recipe.transcribe --clips FILE --out DIR --model M --language vi``: Whisper over the clips.

The model is loaded once; each clip is transcribed with the language fixed and recorded in ``DIR/transcripts.jsonl``
(key: clip sha256 + path) before the next one starts, so a killed run resumes at the next clip. Transcripts that
are non-speech (Whisper's rule), empty, or shorter than ``--min-chars`` letters are dropped with the reason
printed; those filters run on the recorded results, so changing ``--min-chars`` re-judges without re-transcribing.
Publishes ``DIR/metadata.csv`` (``audio_file|text``, absolute clip paths, what F5-TTS's prepare_csv_wavs reads)
and then ``DIR/manifest.json`` last.

Exit codes: 0 done; 1 failed (I/O, out of memory, a model that does not load); 2 bad arguments, unreadable
clips.json, a missing clip, an unknown model, or no clip kept at all.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path
from typing import Any

from f5guard.fsutil import atomic_write_bytes
from f5guard.itemprogress import ItemProgress
from f5guard.recipe.asr import (
    Backend,
    DecodeOptions,
    Rules,
    Segment,
    Transcript,
    check_model,
    clean_text,
    judge,
    load_backend,
    resolve_backend,
)
from f5guard.recipe.audio import AudioDecodeError, load_mono
from f5guard.recipe.ingest import sha256_file
from f5guard.recipe.ledger import Ledger, Record
from f5guard.recipe.manifests import MANIFEST, METADATA, read_clips, retract, write_manifest
from f5guard.recipe.options import TRANSCRIBE, add_flags
from f5guard.recipe.stagecli import BadInput, StageFailed, one_line, pick_device, run_entry, say, signature

PROG = "f5guard.recipe.transcribe"
LEDGER = "transcripts.jsonl"
ASR_RATE = 16000
DROP_REASONS = ("empty", "short", "non_speech", "failed")
BREAKER = 3  # this many clips failing in the model in a row: the model or device is broken, not the clips


class ClipIndex:
    """Content hashes of the clips, reusing the ledger's when size and mtime_ns are unchanged (Drive is slow)."""

    def __init__(self, records: dict[str, Record]) -> None:
        self._known = {(r.get("clip"), r.get("size"), r.get("mtime_ns")): r.get("sha256") for r in records.values()}

    def identify(self, clip: str) -> tuple[str, int, int]:
        """(sha256, size, mtime_ns) of a clip; a missing clip is bad input (segment's output is incomplete)."""
        try:
            st = os.stat(clip)
        except FileNotFoundError as err:
            raise BadInput(f"clip {clip}: missing (rerun f5guard.recipe.segment)") from err
        sha = self._known.get((clip, st.st_size, st.st_mtime_ns))
        return (sha if isinstance(sha, str) else sha256_file(Path(clip))), st.st_size, st.st_mtime_ns


def _recognise(backend: Backend, clip: str) -> dict[str, Any]:
    """One clip through the model: the raw result for the ledger, or why it failed.

    A clip that does not decode stays failed (its bytes will not change). A model error is recorded with
    ``retry``: the next run tries that clip again, since a broken CUDA context fails every clip alike.
    """
    try:
        audio = load_mono(Path(clip), ASR_RATE).numpy()
    except AudioDecodeError as err:
        return {"error": f"does not decode: {err.reason}"}
    try:
        result = backend.transcribe(audio)
    except (MemoryError, OSError):
        raise  # the machine's trouble, not this clip's: fail the stage, the daemon retries it
    except (RuntimeError, ValueError) as err:
        if "out of memory" in str(err).lower():  # torch.cuda.OutOfMemoryError and CPU allocation failures
            raise
        return {"error": f"{type(err).__name__}: {one_line(str(err), 200)}", "retry": True}
    return {
        "text": result.text,
        "segments": [[s.text, s.no_speech_prob, s.avg_logprob] for s in result.segments],
    }


def _transcript(record: Record) -> Transcript:
    segments = tuple(Segment(str(t), float(n), float(a)) for t, n, a in record.get("segments") or [])
    return Transcript(str(record.get("text") or ""), segments)


def metadata_csv(rows: list[tuple[str, str]]) -> bytes:
    """``audio_file|text`` with absolute paths, as prepare_csv_wavs reads it (csv module, "|" delimiter)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="|", lineterminator="\n")
    writer.writerow(["audio_file", "text"])
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


class _Run:
    """One transcribe run: which clips are done, the model over the rest, the judging of all."""

    def __init__(self, ledger: Ledger, options: DecodeOptions, backend: str) -> None:
        self.ledger = ledger
        self.options = options
        self.backend = backend
        self.sig = signature({**options.__dict__, "backend": backend, "v": 1})

    def plan(self, clips: list[str]) -> tuple[list[str], list[tuple[str, str, int, int]]]:
        """Every clip's ledger key, and (key, clip, size, mtime_ns) of those not yet transcribed this way."""
        index = ClipIndex(self.ledger.done)
        keys, todo = [], []
        for clip in clips:
            sha, size, mtime_ns = index.identify(clip)
            key = f"{sha}|{clip}"
            keys.append(key)
            rec = self.ledger.get(key)
            if rec is None or rec.get("sig") != self.sig or rec.get("retry"):
                todo.append((key, clip, size, mtime_ns))
        return keys, todo

    def recognise_all(self, todo: list[tuple[str, str, int, int]], done: int, device: str) -> None:
        backend = load_backend(self.backend, self.options, device)  # once per run, never per clip
        say(f"transcribe: model loaded on {device}")
        in_a_row = 0
        with ItemProgress(total=done + len(todo), done=done) as progress:
            for key, clip, size, mtime_ns in todo:
                result = _recognise(backend, clip)
                self.ledger.append(key, {"sig": self.sig, "clip": clip, "sha256": key.split("|", 1)[0],
                                         "size": size, "mtime_ns": mtime_ns, **result})  # fmt: skip
                in_a_row = in_a_row + 1 if result.get("retry") else 0
                if "error" in result:
                    say(f"failed: {Path(clip).name}: {result['error']}")
                else:
                    say(f"transcribed: {Path(clip).name}: {clean_text(result['text'])[:80]!r}")
                progress.advance()
                if in_a_row >= BREAKER:
                    raise StageFailed(
                        f"model {self.options.model} failed on {in_a_row} clips in a row, last {clip}: "
                        f"{result['error']} (the next run retries them)"
                    )

    def judge_all(self, keys: list[str], rules: Rules) -> tuple[list[tuple[str, str]], dict[str, int]]:
        """metadata.csv rows of the kept clips and the count per drop reason; compacts the ledger."""
        rows: list[tuple[str, str]] = []
        dropped = dict.fromkeys(DROP_REASONS, 0)
        for key in keys:
            rec = self.ledger.done[key]
            if "error" in rec:
                reason, detail = "failed", str(rec["error"])
            else:
                found, detail = judge(_transcript(rec), rules)
                if found is None:
                    rows.append((rec["clip"], clean_text(rec["text"])))
                    continue
                reason = found
            dropped[reason] += 1
            say(f"drop: {Path(rec['clip']).name}: {reason}: {detail}")
        self.ledger.compact({key: self.ledger.done[key] for key in keys})
        return rows, dropped


def transcribe(clips_manifest: Path, out_dir: Path, options: DecodeOptions, rules: Rules, backend_choice: str,
               device_choice: str) -> int:  # fmt: skip
    clips = read_clips(clips_manifest)
    backend = resolve_backend(backend_choice)
    why = check_model(backend, options.model)
    if why is not None:
        raise BadInput(f"--model {options.model}: {why}")
    out_dir.mkdir(parents=True, exist_ok=True)
    retract(out_dir / MANIFEST)  # not done until this run publishes it again
    with Ledger(out_dir / LEDGER) as ledger:
        run = _Run(ledger, options, backend)
        keys, todo = run.plan(clips)
        say(f"transcribe: {len(keys)} clips, {len(keys) - len(todo)} already done, {len(todo)} to transcribe "
            f"({backend} whisper, model {options.model}, language {options.language})")  # fmt: skip
        if todo:
            run.recognise_all(todo, len(keys) - len(todo), pick_device(device_choice))
        rows, dropped = run.judge_all(keys, rules)
    if not rows:
        raise BadInput(f"clips manifest {clips_manifest}: no clip kept out of {len(keys)} ({_counts(dropped)})")
    atomic_write_bytes(out_dir / METADATA, metadata_csv(rows))
    write_manifest(out_dir / MANIFEST, {"kept": len(rows), "dropped": dropped, "metadata": str(out_dir / METADATA)})
    say(f"transcribe: done: {len(rows)} kept, {_counts(dropped)} -> {out_dir / METADATA}")
    return 0


def _counts(dropped: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in dropped.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("--clips", required=True, type=Path, help="clips.json from f5guard.recipe.segment")
    parser.add_argument("--out", required=True, type=Path, help="output folder on home (metadata.csv, manifest.json)")
    add_flags(parser, TRANSCRIBE)
    # not a config option: greedy decoding is what the recipe's transcripts are made with
    parser.add_argument("--beam-size", type=int, default=1, help="1 = greedy, as whisper's transcribe() (default)")
    args = parser.parse_args(argv)
    if args.beam_size < 1 or args.min_chars < 0 or not args.language.strip():
        parser.error("need --beam-size >= 1, --min-chars >= 0 and a --language")
    model = os.path.abspath(args.model) if os.path.exists(args.model) else args.model
    options = DecodeOptions(
        model=model,
        language=args.language.strip(),
        beam_size=args.beam_size,
        no_speech_threshold=args.no_speech_threshold,
        logprob_threshold=args.logprob_threshold,
    )
    rules = Rules(args.min_chars, args.no_speech_threshold, args.logprob_threshold)
    clips = Path(os.path.abspath(args.clips))
    out_dir = Path(os.path.abspath(args.out))
    return run_entry(PROG, lambda: transcribe(clips, out_dir, options, rules, args.backend, args.device))


if __name__ == "__main__":
    sys.exit(main())
