"""Fine-tune a pretrained F5-TTS model on text it has no tokens for (Vietnamese on the Emilia vocab) without the
size mismatch of F5-TTS #449 #740 #870: extend the vocab and the text embedding together.

Token ids keep their meaning: the extended vocab is the pretrained one in its order, then the data's missing
tokens (sorted); the embedding keeps its old rows exactly and gets new rows drawn the way F5-TTS's
finetune_gradio "Extend vocab" draws them (``torch.manual_seed(666)`` then ``torch.randn``). Row 0 of the
embedding is F5-TTS's filler token, so vocab entry i is row i + 1 and an embedding has len(vocab) + 1 rows.

The vocab functions are torch-free; :func:`extend_checkpoint` imports torch when called.
"""

from __future__ import annotations

import os
import pickle
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from f5guard.checkpoints.inspect import TEXT_EMBED_SUFFIX
from f5guard.fsutil import publishing

EMBED_KEY = TEXT_EMBED_SUFFIX  # DiT, UNetT and MMDiT all name it so, under "transformer."
STATE_DICTS = ("ema_model_state_dict", "model_state_dict")
NEW_ROWS_SEED = 666  # finetune_gradio.expand_model_embeddings seeds torch with this before drawing the rows
DROPPED = ("optimizer_state_dict", "scheduler_state_dict", "update", "step")


class VocabError(Exception):
    """The pretrained model, its vocab or the data cannot be combined; a one-line reason."""


def read_vocab(path: Path) -> list[str]:
    """Entries the way F5-TTS's get_tokenizer reads them (text-mode lines, the line break dropped), except that
    a last line without its line break keeps its last character (get_tokenizer would cut it off)."""
    with path.open(encoding="utf-8") as handle:
        return [line[:-1] if line.endswith("\n") else line for line in handle]


def check_unique(entries: list[str], path: Path) -> None:
    """A repeated entry makes get_tokenizer's map shorter than the file: ids past the embedding's end."""
    seen: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        if entry in seen:
            raise VocabError(f"vocab {path}: entry {entry!r} on lines {seen[entry]} and {number} (F5-TTS would give "
                             "ids past the end of the text embedding)")  # fmt: skip
        seen[entry] = number


def missing_tokens(base: list[str], data: list[str]) -> list[str]:
    """The data's tokens that ``base`` lacks, sorted (deterministic: the argv fixes the output)."""
    known = set(base)
    return sorted(t for t in set(data) if t not in known)


def write_vocab(path: Path, entries: list[str]) -> None:
    """One entry per line, UTF-8, every line terminated (get_tokenizer drops each line's last character)."""
    broken = [e for e in entries if "\n" in e or "\r" in e]
    if broken:
        raise VocabError(f"vocab {path}: token {broken[0]!r} holds a line break (a transcript with a newline?)")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(entry + "\n" for entry in entries)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def decomposed(tokens: list[str]) -> list[str]:
    """Combining marks among ``tokens``: transcripts in NFD (e + U+0301) instead of NFC (é)."""
    return [t for t in tokens if len(t) == 1 and unicodedata.combining(t)]


@dataclass(frozen=True)
class Extended:
    """What extend_checkpoint wrote."""

    path: Path
    old_rows: int
    new_rows: int
    state_dicts: tuple[str, ...]  # which state dicts held the embedding
    dropped: tuple[str, ...]  # training state left out: fine-tuning starts at update 0 from the weights


def extend_checkpoint(source: Path, target: Path, base_vocab: int, added: int) -> Extended:
    """Write ``target`` (torch.save, atomically): ``source``'s weights with every text embedding grown by
    ``added`` rows, for a vocab of ``base_vocab`` entries. Raises VocabError when the sizes do not match."""
    import torch  # the stage's torch-free parts must import without it

    document = _load(source)
    states = [name for name in STATE_DICTS if isinstance(document.get(name), dict)]
    if "ema_model_state_dict" not in states:
        raise VocabError(f"pretrained checkpoint {source}: no ema_model_state_dict (F5-TTS loads the EMA weights)")
    generator = torch.Generator().manual_seed(NEW_ROWS_SEED)
    fresh: Any = None
    old_rows = base_vocab + 1
    for name in states:
        state = document[name]
        keys = [k for k in state if k.endswith("transformer." + EMBED_KEY)]
        if len(keys) != 1:
            raise VocabError(f"pretrained checkpoint {source}: {name} has {len(keys)} text embeddings "
                             f"(*transformer.{EMBED_KEY}), expected 1")  # fmt: skip
        weight = state[keys[0]]
        if weight.ndim != 2 or weight.shape[0] != old_rows:
            raise VocabError(f"pretrained checkpoint {source}: text embedding {keys[0]} has {weight.shape[0]} rows, "
                             f"but the pretrained vocab has {base_vocab} entries (+1 filler row = {old_rows}): "
                             "they do not belong together")  # fmt: skip
        if fresh is None:  # one draw, shared: the EMA and the raw weights start equal, as F5-TTS's own do
            fresh = torch.randn((added, weight.shape[1]), generator=generator)
        state[keys[0]] = torch.cat([weight, fresh.to(weight.dtype)], dim=0)
    kept = {name: document[name] for name in states}
    dropped = tuple(k for k in DROPPED if k in document)
    with publishing(target, target.with_name(f".{target.name}.tmp-{os.getpid()}")) as tmp:
        torch.save(kept, tmp)
    return Extended(target, old_rows, old_rows + added, tuple(states), dropped)


def _load(source: Path) -> dict[str, Any]:
    """A .safetensors file is an EMA state dict (what F5-TTS's load_checkpoint makes of it); a .pt is loaded the
    way the Trainer loads it (weights only), memory-mapped when it can be (a full Base checkpoint is ~5 GB)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        if source.suffix == ".safetensors":
            return {"ema_model_state_dict": load_file(str(source), device="cpu")}
        try:
            document = torch.load(source, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            document = torch.load(source, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
        raise VocabError(f"pretrained checkpoint {source}: cannot load: {' '.join(str(err).split())[:300]}") from err
    if not isinstance(document, dict):
        raise VocabError(f"pretrained checkpoint {source}: holds a {type(document).__name__}, not a dict")
    return document
