"""Hear the voice: one sentence synthesized from a checkpoint with F5-TTS's own inference (imports torch).

Run as ``python -m f5guard.trainer.sample CKPT OUT.wav --model PRESET --vocab VOCAB --text TEXT
(--dataset DIR | --ref CLIP [--ref-text TEXT]) [--vocoder DIR]`` by the daemon's sampler (``sample_every``) and
by ``f5guard speak``, in its own process, because neither the daemon nor the CLI imports torch.

The model is built the way the training built it (the run's preset and vocab), with the EMA weights, through
f5_tts.infer.utils_infer (load_vocoder, load_model, preprocess_ref_audio_text, infer_process). A training
checkpoint (~5 GB for Base: model, EMA and optimizer) is first reduced to its EMA in half precision in a local
temp file, read through mmap (trainer/export.py): F5-TTS's loader would read the whole file into RAM beside
the trainer. The reference clip comes from the run's own dataset when none is given: the voice it learns.

Writes OUT.wav (24 kHz, 16-bit) and OUT.json (text, reference clip and transcript, update, seconds) atomically.
Exit codes: 0 written, 1 failed (one line on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from f5guard.errors import F5guardError
from f5guard.fsutil import atomic_write_json, publishing
from f5guard.pdeathsig import follow_supervisor

SEED = 0  # the same noise for every sample: what changes between two samples is the training
REF_MIN_S, REF_MAX_S, REF_IDEAL_S = 3.0, 10.0, 6.0  # F5-TTS clips references over 12 s; 3-10 s serves it best
GPU_MARGIN_BYTES = 2 * 2**30  # vocos, activations of a ~20 s mel, CUDA context
ASR_NOTE = "give its transcript with --ref-text (f5guard never downloads an ASR model for you)"


class SampleFailed(F5guardError, RuntimeError):
    """The checkpoint, reference, vocoder or synthesis failed; one line."""


@dataclass(frozen=True)
class Reference:
    audio: Path
    text: str
    seconds: float | None


def dataset_rows(dataset_dir: Path) -> list[tuple[str, str, float]]:
    """(audio_path, text, duration) of every clip in prepare_csv_wavs' raw.arrow (text is stored as the list of
    characters the tokenizer reads; joined back it is the transcript)."""
    from datasets import Dataset

    raw = dataset_dir / "raw.arrow"
    try:
        table = Dataset.from_file(str(raw))
    except Exception as err:  # pyarrow raises its own errors; FileNotFoundError too
        raise SampleFailed(f"cannot read the dataset {raw}: {_first_line(err)}") from err
    rows: list[tuple[str, str, float]] = []
    for row in table:
        text = row.get("text")
        joined = "".join(text) if isinstance(text, list) else str(text or "")
        rows.append((str(row.get("audio_path", "")), joined, float(row.get("duration") or 0.0)))
    return rows


def pick_reference(rows: list[tuple[str, str, float]]) -> Reference:
    """Deterministic: among clips that exist, 3-10 s ones first, the one nearest 6 s, ties by path."""
    usable = [(path, text, secs) for path, text, secs in rows if text.strip() and Path(path).is_file()]
    if not usable:
        raise SampleFailed("the dataset has no clip with a transcript whose audio file exists here")

    def rank(row: tuple[str, str, float]) -> tuple[bool, float, str]:
        path, _, secs = row
        return (not REF_MIN_S <= secs <= REF_MAX_S, abs(secs - REF_IDEAL_S), path)

    path, text, secs = min(usable, key=rank)
    return Reference(Path(path), text.strip(), secs)


def reference_for(dataset: Path | None, ref: Path | None, ref_text: str | None) -> Reference:
    """The given clip (its transcript given, or looked up in the dataset), else one picked from the dataset."""
    if ref is not None:
        if not ref.is_file():
            raise SampleFailed(f"reference clip {ref} does not exist")
        if ref_text and ref_text.strip():
            return Reference(ref, ref_text.strip(), None)
        if dataset is not None:
            wanted = os.path.realpath(ref)
            for path, text, secs in dataset_rows(dataset):
                if os.path.realpath(path) == wanted and text.strip():
                    return Reference(ref, text.strip(), secs)
        raise SampleFailed(f"reference clip {ref} is not in the run's dataset: {ASR_NOTE}")
    if dataset is None:
        raise SampleFailed("no reference: give --ref CLIP --ref-text TEXT, or --dataset DIR")
    return pick_reference(dataset_rows(dataset))


def inference_weights(src: Path, label: str, scratch: Path) -> tuple[Path, int]:
    """A file F5-TTS's load_checkpoint(use_ema=True) reads cheaply, and the checkpoint's update: ``src`` itself
    when it is already an inference copy (EMA only), else its EMA in half precision written to ``scratch``."""
    import torch

    from f5guard.trainer.export import ExportFailed, ema_half

    try:
        document = torch.load(src, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise SampleFailed(f"could not read {label}: {_first_line(err)}") from err
    if not isinstance(document, dict):
        raise SampleFailed(f"could not read {label}: not a checkpoint dict")
    update = int(document.get("update", 0))
    if set(document) <= {"ema_model_state_dict", "update"} and document.get("ema_model_state_dict"):
        return src, update
    try:
        state = ema_half(document)
    except ExportFailed as err:
        raise SampleFailed(f"{label}: {err}") from err
    out = scratch / "ema.pt"
    torch.save({"ema_model_state_dict": state, "update": update}, out)
    return out, update


def synthesize(
    ckpt: Path,
    out: Path,
    *,
    model: str,
    vocab: Path,
    text: str,
    reference: Reference,
    vocoder: str = "",
    label: str | None = None,
    steps: int = 32,
) -> dict[str, Any]:
    """Write ``out`` (wav) and its ``.json`` note; returns the note."""
    started = time.monotonic()
    if not text.strip():
        raise SampleFailed("the text to speak is empty")
    if vocoder and not (Path(vocoder) / "config.yaml").is_file():
        raise SampleFailed(f"vocoder {vocoder}: no config.yaml there (a local vocos directory is expected)")
    import soundfile as sf
    import torch
    from f5_tts.infer import utils_infer
    from f5_tts.model import DiT

    from f5guard.trainer.presets import MEL_SPEC, dit_kwargs

    name = label or ckpt.name
    with tempfile.TemporaryDirectory(prefix="f5guard-sample-") as scratch:
        weights, update = inference_weights(ckpt, name, Path(scratch))
        device = pick_device(weights.stat().st_size)
        try:
            voc = utils_infer.load_vocoder("vocos", is_local=bool(vocoder), local_path=vocoder, device=device)
        except Exception as err:
            where = vocoder or "charactr/vocos-mel-24khz (download; set vocoder = a local vocos dir offline)"
            raise SampleFailed(f"could not load the vocoder {where}: {_first_line(err)}") from err
        try:
            net = utils_infer.load_model(
                DiT, dit_kwargs(model), str(weights), mel_spec_type=MEL_SPEC["mel_spec_type"],
                vocab_file=str(vocab), use_ema=True, device=device,
            )  # fmt: skip
        except Exception as err:
            raise SampleFailed(f"could not load {name} as a {model} model with {vocab}: {_first_line(err)}") from err
    try:
        ref_audio, ref_text = utils_infer.preprocess_ref_audio_text(str(reference.audio), reference.text, _quiet)
        torch.manual_seed(SEED)
        wave, rate, _ = utils_infer.infer_process(
            ref_audio, ref_text, text, net, voc, mel_spec_type=MEL_SPEC["mel_spec_type"], show_info=_quiet,
            nfe_step=steps, device=device,
        )  # fmt: skip
    except SampleFailed:
        raise
    except Exception as err:
        raise SampleFailed(f"synthesis failed: {_first_line(err)}") from err
    if wave is None or len(wave) == 0:
        raise SampleFailed("synthesis produced no audio")
    out.parent.mkdir(parents=True, exist_ok=True)
    with publishing(out) as tmp:
        sf.write(str(tmp), wave, rate, subtype="PCM_16", format="WAV")
    note: dict[str, Any] = {
        "text": text,
        "ref_audio": str(reference.audio),
        "ref_text": reference.text,
        "update": update,
        "checkpoint": name,
        "seconds": round(time.monotonic() - started, 2),
        "audio_s": round(len(wave) / rate, 2),
        "sample_rate": int(rate),
        "device": device,
        "vocoder": vocoder or "charactr/vocos-mel-24khz",
    }
    atomic_write_json(out.with_suffix(".json"), note)
    return note


def pick_device(weights_bytes: int) -> str:
    """The GPU when there is one with room beside the trainer, else the CPU: a sample must never push the
    training it listens to out of GPU memory (the trainer's cache holds its peak after the first updates)."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    free, _total = torch.cuda.mem_get_info()
    need = 2 * weights_bytes + GPU_MARGIN_BYTES  # fp16 weights, their fp16 model, the vocoder and activations
    if free < need:
        print(f"only {free / 2**30:.1f} GiB free on the GPU (need ~{need / 2**30:.1f}): sampling on the CPU")
        return "cpu"
    return "cuda"


def _quiet(*_args: object, **_kwargs: object) -> None:
    """F5-TTS's show_info: its progress lines would only fill the log."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _terminate(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds through publishing(): the temp file is removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m f5guard.trainer.sample", description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path, help="a training checkpoint or an inference copy (EMA)")
    parser.add_argument("out", type=Path, help="the wav to write (its .json note beside it)")
    parser.add_argument("--model", required=True, choices=["tiny", "small", "base"], help="the run's preset")
    parser.add_argument("--vocab", required=True, type=Path, help="the run's vocab.txt")
    said = parser.add_mutually_exclusive_group(required=True)
    said.add_argument("--text", help="what to say")
    said.add_argument("--text-stdin", action="store_true", help="read what to say from stdin (any length)")
    parser.add_argument("--dataset", type=Path, help="the run's dataset dir (raw.arrow): the reference clip")
    parser.add_argument("--ref", type=Path, help="a reference clip instead of one from the dataset")
    parser.add_argument("--ref-text", help="the reference clip's transcript")
    parser.add_argument("--vocoder", default="", help="a local vocos dir; empty: charactr/vocos-mel-24khz")
    parser.add_argument("--steps", type=int, default=32, help="flow steps (NFE), F5-TTS's default 32")
    parser.add_argument("--label", help="the checkpoint's name in messages")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    follow_supervisor()
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    try:
        reference = reference_for(args.dataset, args.ref, args.ref_text)
        note = synthesize(
            args.ckpt, args.out, model=args.model, vocab=args.vocab, reference=reference,
            text=sys.stdin.read() if args.text_stdin else args.text,
            vocoder=args.vocoder, label=args.label, steps=args.steps,
        )  # fmt: skip
    except (SampleFailed, OSError) as err:
        print(f"f5guard.trainer.sample: {getattr(err, 'message', None) or err}", file=sys.stderr)
        return 1
    print(f"sample of update {note['update']}: {args.out} ({note['audio_s']} s audio in {note['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
