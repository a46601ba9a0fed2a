"""F5-TTS checkpoints without torch: validate one file, pick the newest valid, make F5-TTS resume from it.

The daemon must stay light (no torch import), so a ``torch.save`` zip is checked by reading its zip directory
and unpickling ``data.pkl`` with inert stand-ins for torch's classes (``inertpickle``): nothing from the file
is ever executed.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
import struct
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from f5guard.checkpoints.inertpickle import ITEMSIZE, InertUnpickler, TensorRef
from f5guard.errors import F5guardError
from f5guard.fsutil import fsync_dir, publishing

Kind = Literal["last", "numbered", "pretrained"]

LAST_NAME = "model_last.pt"
_NUMBERED = re.compile(r"^model_(\d+)\.(pt|safetensors)$")
_CHECKPOINT_SUFFIXES = (".pt", ".safetensors")
_TMP_MARK = ".f5guard-tmp-"  # our own copies in flight: never ends in .pt, so F5-TTS never sees them
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


@dataclass(frozen=True)
class ResumePlan:
    """What prepare_resume found and did; ``chosen`` is None when training starts from scratch."""

    chosen: CheckpointInfo | None
    quarantined: list[Quarantined] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)  # one human line each, for the log

    @property
    def start_update(self) -> int:
        return self.chosen.update if self.chosen is not None else 0


# ---------------------------------------------------------------------------------------------- one file
def classify(name: str) -> Kind | None:
    """The role F5-TTS's load_checkpoint gives a file name; None for files it ignores."""
    if name == LAST_NAME:
        return "last"
    if _NUMBERED.match(name):
        return "numbered"
    if name.startswith("pretrained_") and name.endswith(_CHECKPOINT_SUFFIXES):
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
            prefix, pkl = _pickle_entry(p, entries)
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


def _pickle_entry(p: Path, entries: dict[str, zipfile.ZipInfo]) -> tuple[str, zipfile.ZipInfo]:
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
            if name.startswith("model_") and name.endswith(_CHECKPOINT_SUFFIXES):
                # F5-TTS sorts model_* by the digits in the name: "model_best.pt" crashes int("")
                invalid[name] = f"file name {name} breaks F5-TTS's checkpoint ordering"
            continue
        try:
            valid.append(inspect_checkpoint(directory / name))
        except CheckpointInvalid as err:
            invalid[name] = str(err)
    return Scan(valid, invalid)


def f5tts_pick(names: list[str]) -> str | None:
    """The file F5-TTS 1.1.22's Trainer.load_checkpoint would load from these names (None: start at 0)."""
    if not any(n.endswith(_CHECKPOINT_SUFFIXES) for n in names):
        return None
    if LAST_NAME in names:
        return LAST_NAME  # always, even when a newer model_{N}.pt exists (#924)
    candidates = [n for n in names if n.startswith(("model_", "pretrained_")) and n.endswith(_CHECKPOINT_SUFFIXES)]
    numbered = [n for n in candidates if n.startswith("model_")]
    if numbered:
        return max(numbered, key=lambda n: int("".join(filter(str.isdigit, n)) or "-1"))
    pretrained = [n for n in names if n.startswith("pretrained_") and n.endswith(_CHECKPOINT_SUFFIXES)]
    return pretrained[0] if pretrained else None  # listdir order in F5-TTS: the first one found


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


def prepare_resume(ckpt_dir: str | os.PathLike[str]) -> ResumePlan:
    """Make F5-TTS's own load_checkpoint pick the newest valid checkpoint; quarantine the corrupt ones.

    Call it while no trainer writes to ``ckpt_dir``: a checkpoint being written looks truncated.
    """
    directory = Path(ckpt_dir)
    actions: list[str] = []
    if directory.is_dir():
        for name in os.listdir(directory):
            if _TMP_MARK in name and not _writer_alive(name):  # a half-made copy left by a crash
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(directory / name)
                actions.append(f"removed stale temporary copy {name}")
    scan = scan_dir(directory)
    quarantined = [quarantine(directory / name, reason) for name, reason in sorted(scan.invalid.items())]
    actions += [f"quarantined {q.name} as {q.moved_to}: {q.reason}" for q in quarantined]
    newest = scan.newest()
    if newest is None:
        return ResumePlan(None, quarantined, actions)
    by_name = {c.name: c for c in scan.valid}
    picked = by_name.get(f5tts_pick(sorted(by_name)) or "")
    if picked is not None and _at_least_as_new(picked, newest):
        return ResumePlan(picked, quarantined, actions)
    if newest.path.suffix != ".pt":  # a .safetensors file cannot become model_last.pt (torch.load reads that)
        return ResumePlan(picked, quarantined, actions)
    # F5-TTS would load something older: put the newest where it always looks first.
    actions += _install_as_last(directory, newest, by_name.get(LAST_NAME))
    return ResumePlan(inspect_checkpoint(directory / LAST_NAME), quarantined, actions)


def _writer_alive(tmp_name: str) -> bool:
    """Temporary copies end in the writer's pid; one still being written by a live process is not stale."""
    pid = tmp_name.rsplit(_TMP_MARK, 1)[-1]
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True  # another thread of this process (the daemon's restore) may be writing it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _at_least_as_new(picked: CheckpointInfo, newest: CheckpointInfo) -> bool:
    if picked.kind == "pretrained" and newest.kind != "pretrained":
        return False
    return picked.update >= newest.update


def _install_as_last(directory: Path, newest: CheckpointInfo, old_last: CheckpointInfo | None) -> list[str]:
    """Copy ``newest`` over model_last.pt atomically, keeping an older valid model_last.pt under a new name.

    A copy, not a hard link: torch.save truncates and rewrites model_last.pt in place, which would also
    destroy the numbered file sharing its inode.
    """
    actions: list[str] = []
    last = directory / LAST_NAME
    tmp = directory / f".{LAST_NAME}{_TMP_MARK}{os.getpid()}"
    try:
        with newest.path.open("rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=16 * 1024 * 1024)
            dst.flush()
            os.fsync(dst.fileno())
        # the copy must be as good as its source before it becomes the file F5-TTS loads
        inspect_checkpoint(tmp, kind="last")
        if old_last is not None:
            # As a numbered file it stays a candidate F5-TTS understands; never deleted.
            aside = directory / f"model_{old_last.update}.pt"
            if aside.exists():
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                aside = directory / f"{LAST_NAME}.superseded-{stamp}"
            os.rename(last, aside)
            actions.append(f"kept the older {LAST_NAME} (update {old_last.update}) as {aside.name}")
        os.replace(tmp, last)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(directory)
    actions.append(f"copied {newest.name} (update {newest.update}) to {LAST_NAME}")
    return actions


def file_sha256(path: str | os.PathLike[str], chunk: int = 8 * 1024 * 1024) -> str:
    """Hex SHA-256 of a file, streamed (checkpoints are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def place_pretrained(source: str | os.PathLike[str], ckpt_dir: str | os.PathLike[str]) -> CheckpointInfo:
    """Put a local pretrained file where F5-TTS looks for one (pretrained_<name>), validated first.

    A hard link when source and target share a filesystem (nothing ever writes pretrained_* in place),
    else an atomic copy; an existing valid file of that name is kept.
    """
    src = Path(source)
    inspect_checkpoint(src, kind="pretrained")
    directory = Path(ckpt_dir)
    directory.mkdir(parents=True, exist_ok=True)
    name = src.name if src.name.startswith("pretrained_") else f"pretrained_{src.name}"
    target = directory / name
    if target.exists():
        with contextlib.suppress(CheckpointInvalid):
            return inspect_checkpoint(target)
        quarantine(target, "invalid pretrained file replaced by a fresh copy")
    with publishing(target, directory / f".{name}{_TMP_MARK}{os.getpid()}") as tmp:
        try:
            os.link(src, tmp)
        except OSError:  # another filesystem (Drive), or links unsupported
            shutil.copyfile(src, tmp)
    return inspect_checkpoint(target)
