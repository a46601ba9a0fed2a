"""``python -m f5guard.recipe.prepare --metadata CSV --out DIR [--pretrained CKPT --pretrained-vocab VOCAB]``:
F5-TTS's own dataset preparation, published as DIR/data/ (raw.arrow, duration.json, vocab.txt).

With a pretrained model, DIR/data/vocab.txt is the pretrained vocab (same order) plus the data's missing tokens,
and DIR/pretrained_extended.pt is the pretrained checkpoint with its text embedding grown to match (see
f5guard.recipe.extend_vocab): train with pretrained=DIR/pretrained_extended.pt, tokenizer DIR/data/vocab.txt.
DIR/manifest.json is removed first and written last.

Exit codes: 0 done; 1 the data or the pretrained model cannot be prepared (one line on stderr); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from f5guard.fsutil import fsync_dir
from f5guard.recipe.extend_vocab import (
    VocabError,
    check_unique,
    decomposed,
    extend_checkpoint,
    missing_tokens,
    read_vocab,
    write_vocab,
)
from f5guard.recipe.manifests import MANIFEST, retract, write_manifest
from f5guard.recipe.options import MAX_CLIP_S, MIN_CLIP_S

PROG = "f5guard.recipe.prepare"
DATA = "data"
EXTENDED = "pretrained_extended.pt"


class PrepareFailed(Exception):
    """One line after the program name: what, which path, why."""


def _clean_leftovers(out: Path) -> None:
    """Temp folders and files of a killed earlier run (ours only: they carry our markers)."""
    for path in [*out.glob(".prepare.tmp-*"), *out.glob(f".{DATA}.old-*")]:
        shutil.rmtree(path, ignore_errors=True)
    for path in out.glob(f".{EXTENDED}.tmp-*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _publish_dir(staging: Path, target: Path) -> None:
    """Swap a finished folder in: the old one moves aside first, then is deleted once the new one is in place."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def run_f5_prepare(metadata: Path, staging: Path, workers: int) -> tuple[list[float], int]:
    """F5-TTS's prepare_and_save_set into ``staging``; the clip durations and the number of CSV rows it read."""
    from f5_tts.train.datasets.prepare_csv_wavs import (  # torch, torchaudio, datasets
        prepare_and_save_set,
        read_audio_text_pairs,
    )

    try:
        rows_in = len(read_audio_text_pairs(str(metadata)))
        # is_finetune=False: build the vocab from the data (True copies the Emilia vocab from F5-TTS's git tree,
        # which the wheel lacks); a pretrained vocab is merged in afterwards, in its own order.
        prepare_and_save_set(str(metadata), str(staging), is_finetune=False, num_workers=workers)
        durations = json.loads((staging / "duration.json").read_text(encoding="utf-8"))["duration"]
    except (ValueError, RuntimeError, OSError, KeyError) as err:
        raise PrepareFailed(f"prepare {metadata}: {' '.join(str(err).split())[:300]}") from err
    return durations, rows_in


def build(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare into a temp folder, merge the vocab, extend the checkpoint, publish; the manifest to write."""
    out: Path = args.out
    scratch = out / f".prepare.tmp-{os.getpid()}"
    staging = scratch / DATA  # named like the target: F5-TTS prints the folder's name as the dataset's
    try:
        durations, rows_in = run_f5_prepare(args.metadata, staging, args.workers)
        data_vocab = staging / "vocab.txt"
        tokens = read_vocab(data_vocab)
        print(f"prepared {len(durations)} of {rows_in} rows, {sum(durations) / 3600:.2f} h, {len(tokens)} tokens")
        extended = None
        if args.pretrained is not None:
            base = read_vocab(args.pretrained_vocab)
            check_unique(base, args.pretrained_vocab)
            added = missing_tokens(base, tokens)
            print(f"pretrained vocab: {len(base)} tokens; the data adds {len(added)}: {''.join(added)!r}")
            started = time.monotonic()
            extended = extend_checkpoint(args.pretrained, out / EXTENDED, len(base), len(added))
            print(f"text embedding {extended.old_rows} -> {extended.new_rows} rows in {', '.join(extended.state_dicts)}"
                  f" ({time.monotonic() - started:.1f} s); wrote {extended.path}")  # fmt: skip
            if extended.dropped:
                print(f"left out {', '.join(extended.dropped)}: fine-tuning starts at update 0 from these weights")
            vocab = base + added
        else:
            added, vocab = [], tokens
            with contextlib.suppress(FileNotFoundError):
                (out / EXTENDED).unlink()  # from an earlier run with --pretrained: it no longer matches the data
        write_vocab(data_vocab, vocab)
        _publish_dir(staging, out / DATA)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _warn(durations, rows_in, decomposed(tokens))
    return {
        "rows": len(durations),
        "skipped": rows_in - len(durations),
        "hours": round(sum(durations) / 3600, 4),
        "vocab_size": len(vocab),
        "added_chars": added,
        "pretrained_extended": str(extended.path) if extended else None,
        "pretrained": str(args.pretrained) if args.pretrained else None,
        "data_dir": str(out / DATA),
    }


def _warn(durations: list[float], rows_in: int, combining: list[str]) -> None:
    if rows_in > len(durations):
        print(f"warning: {rows_in - len(durations)} rows skipped (audio missing or unreadable: see above)")
    outside = sum(1 for d in durations if not MIN_CLIP_S <= d <= MAX_CLIP_S)
    if outside:
        print(f"warning: {outside} clips are outside {MIN_CLIP_S}-{MAX_CLIP_S} s; training will skip them")
    if combining:
        print(f"warning: the transcripts hold combining marks {combining!r} (Unicode NFD): normalise them to NFC, "
              "or the tone marks become tokens of their own")  # fmt: skip


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("--metadata", required=True, type=Path, help="audio_file|text CSV, absolute audio paths")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--pretrained", type=Path, help="pretrained F5-TTS checkpoint (.pt or .safetensors)")
    parser.add_argument("--pretrained-vocab", type=Path, help="the vocab.txt the pretrained model was trained with")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="threads reading audio durations (does not change the output)")  # fmt: skip
    args = parser.parse_args(argv)
    if (args.pretrained is None) != (args.pretrained_vocab is None):
        parser.error("--pretrained and --pretrained-vocab go together")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    for flag, path in (("--metadata", args.metadata), ("--pretrained", args.pretrained),
                       ("--pretrained-vocab", args.pretrained_vocab)):  # fmt: skip
        if path is not None and not path.is_file():
            parser.error(f"{flag} {path}: no such file")
    if args.pretrained is not None and args.pretrained.suffix not in (".pt", ".safetensors"):
        parser.error(f"--pretrained {args.pretrained}: expected a .pt or .safetensors file")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.monotonic()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        retract(args.out / MANIFEST)  # a killed rerun must not look done
        _clean_leftovers(args.out)
        # F5-TTS's tqdm bars and library warnings belong in the log: stderr carries only the one-line verdict
        with contextlib.redirect_stderr(sys.stdout):
            manifest = build(args)
        write_manifest(args.out / MANIFEST, manifest)
    except (PrepareFailed, VocabError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"{PROG}: write {err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"{manifest['rows']} rows, vocab {manifest['vocab_size']} in {time.monotonic() - started:.1f} s; "
          f"wrote {args.out / MANIFEST}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
