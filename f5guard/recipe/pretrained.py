"""``python -m f5guard.recipe.pretrained --name F5TTS_v1_Base --out DIR``: a released F5-TTS model, fetched once
onto home (Drive) with the vocab its text embedding was trained with, so a recycled VM never downloads it again.

Writes DIR/<model file>, DIR/vocab.txt, then DIR/manifest.json last. Needs the network (Hugging Face).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import os
import shutil
import sys
import time
from dataclasses import replace
from importlib.resources import files
from pathlib import Path, PurePosixPath

from f5guard.fsutil import fsync_dir
from f5guard.recipe.manifests import MANIFEST, read_manifest, write_manifest
from f5guard.recipe.options import PRETRAINED_NAME, add_flags

# name -> (Hugging Face repo, file in it): the checkpoints F5-TTS's own finetune_cli fetches for --finetune.
RELEASES = {
    "F5TTS_v1_Base": ("SWivid/F5-TTS", "F5TTS_v1_Base/model_1250000.safetensors"),
    "F5TTS_Base": ("SWivid/F5-TTS", "F5TTS_Base/model_1200000.pt"),
}
PROG = "f5guard.recipe.pretrained"
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
VOCAB = "vocab.txt"  # beside the model: the vocab its text embedding was trained with


def model_file(name: str) -> str:
    """The file a release is published as in its folder; the suffix (.pt or .safetensors) is the release's."""
    return f"pretrained_{name}{PurePosixPath(RELEASES[name][1]).suffix}"


def fetch(name: str, out: Path) -> Path:
    """Download into a temp folder next to ``out``, then move the finished file in; returns its path."""
    from huggingface_hub import hf_hub_download

    repo, filename = RELEASES[name]
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".download-{os.getpid()}"
    try:
        downloaded = Path(hf_hub_download(repo_id=repo, filename=filename, local_dir=staging))
        target = out / model_file(name)
        os.replace(downloaded, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    vocab = out / VOCAB
    tmp = out / f".{VOCAB}.tmp"
    tmp.write_text(files("f5_tts").joinpath("infer/examples/vocab.txt").read_text(encoding="utf-8"), encoding="utf-8")
    os.replace(tmp, vocab)
    fsync_dir(out)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def downloaded(out: Path) -> bool:
    """Runs share one download on home: a complete earlier fetch (manifest written last) is reused."""
    manifest = read_manifest(out / MANIFEST)
    if manifest is None:
        return False
    try:
        return Path(manifest["model"]).stat().st_size == manifest["size"] and (out / VOCAB).is_file()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _hint(err: Exception) -> str:
    """What to do instead, unless the failure was the local disk's (full, read-only, not allowed)."""
    if isinstance(err, OSError) and err.errno in _DISK_ERRNOS:
        return ""
    return (
        " (the released model comes from Hugging Face and needs the network; offline, fine-tune a local copy: "
        "`f5guard init --pretrained /path/to/model.safetensors` with vocab.txt beside it, or use `--pretrained none` "
        "to train from scratch)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    add_flags(parser, [replace(PRETRAINED_NAME, help=f"one of {', '.join(RELEASES)}")])
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.name not in RELEASES:
        print(f"{PROG}: unknown model {args.name!r}; known: {', '.join(RELEASES)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    if downloaded(args.out):
        print(f"{args.name} is already in {args.out} (verified size); nothing to download")
        return 0
    try:
        model = fetch(args.name, args.out)
    except Exception as err:  # noqa: BLE001 - network, auth, disk: one line for the stage log and status
        text = " ".join(str(err).split())[:300]
        print(f"{PROG}: could not download {args.name} to {args.out}: {type(err).__name__}: {text}{_hint(err)}",
              file=sys.stderr)  # fmt: skip
        return 1
    write_manifest(
        args.out / MANIFEST,
        {
            "name": args.name,
            "model": str(model),
            "vocab": str(args.out / VOCAB),
            "size": model.stat().st_size,
            "sha256": _sha256(model),
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    with contextlib.suppress(OSError):
        print(f"fetched {args.name}: {model} ({model.stat().st_size / 2**30:.2f} GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
