"""F5-TTS checkpoints without torch: validate one file, scan a directory for the newest valid, quarantine.

The daemon must stay light (no torch import), so a ``torch.save`` zip is checked by reading its zip directory
and unpickling ``data.pkl`` with inert stand-ins for torch's classes (``inertpickle``): nothing from the file
is ever executed. Making F5-TTS resume from the newest one is ``resume``'s job.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import re
import struct
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from f5guard.checkpoints.inertpickle import ITEMSIZE, InertUnpickler, TensorRef
from f5guard.errors import F5guardError
from f5guard.fsutil import fsync_dir

Kind = Literal["last", "numbered", "pretrained"]

LAST_NAME = "model_last.pt"
_NUMBERED = re.compile(r"^model_(\d+)\.(pt|safetensors)$")
CHECKPOINT_SUFFIXES = (".pt", ".safetensors")
_TRAINING_KEYS = ("model_state_dict", "optimizer_state_dict", "ema_model_state_dict", "scheduler_state_dict")
_MAX_PICKLE_BYTES = 256 * 1024 * 1024  # data.pkl holds only structure; real ones are well under 10 MB


class CheckpointInvalid(F5guardError, ValueError):
    """A checkpoint file that F5-TTS could not load: truncated, corrupt, or not a checkpoint."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What one valid checkpoint file holds, as far as resuming is concerned."""

    path: Path
    name: str
    kind: Kind
    update: int  # what F5-TTS's load_checkpoint returns for it (legacy `step` as-is; 0 without either)
    size: int
    mtime: float
    legacy_step: bool = False  # the file stores `step`, which F5-TTS divides by grad_accumulation_steps
    text_rows: int | None = None  # rows of the text embedding: vocab size + 1 (None where not readable)


@dataclass(frozen=True)
class Quarantined:
    """A file moved aside (never deleted) so F5-TTS cannot trip over it on every restart (#754)."""

    name: str
    moved_to: str
    reason: str


# ---------------------------------------------------------------------------------------------- one file
def classify(name: str) -> Kind | None:
    """The role F5-TTS's load_checkpoint gives a file name; None for files it ignores."""
    if name == LAST_NAME:
        return "last"
    if _NUMBERED.match(name):
        return "numbered"
    if name.startswith("pretrained_") and name.endswith(CHECKPOINT_SUFFIXES):
        return "pretrained"
    return None


_CACHE_SIZE = 64
_cache: collections.OrderedDict[tuple[Any, ...], CheckpointInfo | str] = collections.OrderedDict()
_cache_lock = threading.Lock()


def inspect_checkpoint(path: str | os.PathLike[str], kind: Kind | None = None) -> CheckpointInfo:
    """Validate one checkpoint without torch; raise CheckpointInvalid with a one-line reason.

    ``kind`` defaults to the role of the file name (pretrained for names F5-TTS does not know). Verdicts are
    remembered per (path, inode, size, mtime, ctime): the daemon, the sync and every restart look at the same
    files again and again, and F5-TTS rewriting a file in place changes its mtime.
    """
    p = Path(path)
    kind = kind or classify(p.name) or "pretrained"
    try:
        st = p.stat()
    except OSError as err:
        raise CheckpointInvalid(f"cannot read checkpoint {p}: {err.strerror or err}") from err
    key = (str(p), kind, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _cache_lock:
        known = _cache.get(key)
    if isinstance(known, CheckpointInfo):
        return known
    if isinstance(known, str):
        raise CheckpointInvalid(known)
    try:
        info = _inspect(p, kind, st)
    except CheckpointInvalid as err:
        _remember(key, str(err))
        raise
    _remember(key, info)
    return info


def _remember(key: tuple[Any, ...], verdict: CheckpointInfo | str) -> None:
    with _cache_lock:
        _cache[key] = verdict
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def _inspect(p: Path, kind: Kind, st: os.stat_result) -> CheckpointInfo:
    if p.name.endswith(".safetensors"):
        _check_safetensors(p, st.st_size)
        return CheckpointInfo(p, p.name, kind, 0, st.st_size, st.st_mtime)
    document = _read_torch_zip(p)
    if not isinstance(document, dict):
        raise CheckpointInvalid(f"checkpoint {p} holds a {type(document).__name__}, not a dict")
    if "ema_model_state_dict" not in document:  # load_checkpoint reads it for every kind of file
        raise CheckpointInvalid(f"checkpoint {p} has no ema_model_state_dict")
    has_counter = "update" in document or "step" in document
    if kind != "pretrained" or has_counter:  # a counter makes F5-TTS load the full training state
        missing = [key for key in _TRAINING_KEYS if key not in document]
        if missing or not has_counter:
            what = ", ".join(missing) if missing else "update"
            raise CheckpointInvalid(f"checkpoint {p} lacks {what} (not a resumable F5-TTS checkpoint)")
    not_dicts = [k for k in _TRAINING_KEYS if k in document and not isinstance(document[k], dict)]
    if not_dicts:
        raise CheckpointInvalid(f"checkpoint {p}: {', '.join(not_dicts)} not a dict")
    legacy = "update" not in document and "step" in document
    counter = document.get("update", document.get("step", 0))
    if isinstance(counter, bool) or not isinstance(counter, int) or counter < 0:
        raise CheckpointInvalid(f"checkpoint {p} has a non-integer update counter {counter!r}")
    return CheckpointInfo(
        p,
        p.name,
        kind,
        counter,
        st.st_size,
        st.st_mtime,
        legacy_step=legacy,
        text_rows=_text_rows(document.get("ema_model_state_dict")),
    )


TEXT_EMBED_SUFFIX = "text_embed.text_embed.weight"


def _text_rows(state: Any) -> int | None:
    """The text embedding's row count, from the tensor's recorded shape (no data is read)."""
    if not isinstance(state, dict):
        return None
    for key, value in state.items():
        if isinstance(key, str) and key.endswith(TEXT_EMBED_SUFFIX) and isinstance(value, TensorRef) and value.shape:
            return int(value.shape[0])
    return None


def _read_torch_zip(p: Path) -> Any:
    """Check the zip directory and the storages data.pkl refers to, then return the inert document."""
    try:
        with zipfile.ZipFile(p) as archive:  # the central directory is written last: truncation fails here
            entries = {info.filename: info for info in archive.infolist()}
            prefix, pkl = pickle_entry(p, entries)
            unpickler = InertUnpickler(archive.read(pkl))
            document = unpickler.load()
    except CheckpointInvalid:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise CheckpointInvalid(f"checkpoint {p} is not a complete zip ({err}); truncated write?") from err
    except pickle.UnpicklingError as err:
        raise CheckpointInvalid(f"checkpoint {p}: data.pkl rejected ({err})") from err
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as err:
        raise CheckpointInvalid(f"checkpoint {p}: data.pkl is corrupt ({type(err).__name__}: {err})") from err
    except OSError as err:
        raise CheckpointInvalid(f"cannot read checkpoint {p}: {err.strerror or err}") from err
    for key, (storage_type, numel) in unpickler.storages.items():
        info = entries.get(f"{prefix}/data/{key}")
        if info is None:
            raise CheckpointInvalid(f"checkpoint {p} lacks tensor data {prefix}/data/{key}")
        itemsize = ITEMSIZE.get(storage_type)
        if itemsize is not None and info.file_size != numel * itemsize:
            raise CheckpointInvalid(f"checkpoint {p}: tensor data {key} has {info.file_size} bytes, "
                                    f"expected {numel * itemsize}")  # fmt: skip
    return document


def pickle_entry(p: Path, entries: dict[str, zipfile.ZipInfo]) -> tuple[str, zipfile.ZipInfo]:
    """torch.save puts every entry under one prefix: <prefix>/data.pkl, <prefix>/version, <prefix>/data/N."""
    prefixes = {name.split("/", 1)[0] for name in entries}
    if len(prefixes) != 1:
        raise CheckpointInvalid(f"checkpoint {p} is a zip but not a torch.save archive")
    prefix = prefixes.pop()
    pkl = entries.get(f"{prefix}/data.pkl")
    if pkl is None or f"{prefix}/version" not in entries:
        raise CheckpointInvalid(f"checkpoint {p} is missing {prefix}/data.pkl or {prefix}/version")
    if pkl.file_size > _MAX_PICKLE_BYTES:
        raise CheckpointInvalid(f"checkpoint {p} has an implausibly large data.pkl")
    return prefix, pkl


def _check_safetensors(p: Path, size: int) -> None:
    """A safetensors file is an 8-byte header length, a JSON header, then exactly the tensors' bytes."""
    try:
        with p.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise CheckpointInvalid(f"checkpoint {p} is too short for safetensors")
            (length,) = struct.unpack("<Q", head)
            if length > min(size - 8, 100 * 1024 * 1024):
                raise CheckpointInvalid(f"checkpoint {p} has a safetensors header longer than the file")
            header = json.loads(handle.read(length))
    except OSError as err:
        raise CheckpointInvalid(f"cannot read checkpoint {p}: {err.strerror or err}") from err
    except ValueError as err:
        raise CheckpointInvalid(f"checkpoint {p} has an unreadable safetensors header ({err})") from err
    if not isinstance(header, dict):
        raise CheckpointInvalid(f"checkpoint {p} has a safetensors header that is not an object")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise CheckpointInvalid(f"checkpoint {p}: safetensors entry {name!r} has no data_offsets")
        end = max(end, offsets[1])
    if 8 + length + end != size:
        raise CheckpointInvalid(f"checkpoint {p} has {size} bytes, its safetensors header says {8 + length + end}")


# ------------------------------------------------------------------------------------- a directory
@dataclass(frozen=True)
class Scan:
    """Every checkpoint-like file in a directory, split into valid and invalid (name -> reason)."""

    valid: list[CheckpointInfo]
    invalid: dict[str, str]

    def newest(self) -> CheckpointInfo | None:
        """Highest update wins; on a tie model_last.pt, then a numbered file, then pretrained."""
        rank = {"pretrained": 0, "numbered": 1, "last": 2}
        if not self.valid:
            return None
        return max(self.valid, key=lambda c: (c.kind != "pretrained", c.update, rank[c.kind], c.name))


def scan_dir(ckpt_dir: str | os.PathLike[str]) -> Scan:
    """Inspect the files F5-TTS's load_checkpoint would consider, plus model_* names it would choke on."""
    directory = Path(ckpt_dir)
    valid: list[CheckpointInfo] = []
    invalid: dict[str, str] = {}
    if not directory.is_dir():
        return Scan(valid, invalid)
    for name in sorted(os.listdir(directory)):
        if classify(name) is None:
            if name.startswith("model_") and name.endswith(CHECKPOINT_SUFFIXES):
                # F5-TTS sorts model_* by the digits in the name: "model_best.pt" crashes int("")
                invalid[name] = f"file name {name} breaks F5-TTS's checkpoint ordering"
            continue
        try:
            valid.append(inspect_checkpoint(directory / name))
        except CheckpointInvalid as err:
            invalid[name] = str(err)
    return Scan(valid, invalid)


def quarantine(path: str | os.PathLike[str], reason: str) -> Quarantined:
    """Rename a bad file to <name>.corrupt-<UTC time> (never deleted: a person may want it back)."""
    p = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = p.with_name(f"{p.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = p.with_name(f"{p.name}.corrupt-{stamp}-{n}")
        n += 1
    os.rename(p, target)
    fsync_dir(p.parent)
    return Quarantined(p.name, target.name, reason)
