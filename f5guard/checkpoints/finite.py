"""Are a checkpoint's weights finite? Torch-free: the floating-point tensors of the model and its EMA, read from
the ``torch.save`` zip (or the safetensors file), looked at by their exponent bits.

The trainer never saves non-finite parameters (trainer/nanguard.py), but a checkpoint can still hold NaN: one
an older f5guard published, a user's own F5-TTS command (mode = "command"), a file someone put there. So the
sync publishes none, resume quarantines one, and restore skips one. Not trusted to anyone's word: the bytes are
read. A NaN or an infinity has every exponent bit set, so the high byte of each value tells at once (a strided
slice and a memchr per byte value that could be one); only where one could be does the next byte decide.
``zipfile``'s CRC is left to the digests publish and restore compare (bench/nanguard_bench.py: ~1.2 GB/s). The
optimizer state is not read: it cannot be non-finite while the weights are finite, and it is twice their size.
Verdicts are remembered per file version, and per content digest for home's files.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import struct
import threading
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from f5guard.checkpoints.inertpickle import InertUnpickler, TensorRef
from f5guard.checkpoints.inspect import CheckpointInvalid, pickle_entry

CHUNK = 8 * 1024 * 1024  # a multiple of every item size
STATE_DICTS = ("model_state_dict", "ema_model_state_dict")


class _Format:
    """Where a float's non-finite marks lie: the byte holding the sign and the exponent's high bits (``hi``),
    whose values ``hi_set`` all mean "maybe", and (for formats whose exponent spills over) the next byte's
    ``lo_mask`` bits, which must all be set too."""

    def __init__(self, size: int, hi: int, hi_set: frozenset[int], lo: int | None = None, lo_mask: int = 0) -> None:
        self.size, self.hi, self.lo = size, hi, lo
        self._maybe = [bytes([b]) for b in sorted(hi_set)]  # each looked for with memchr: GB/s
        self._hi_flag = bytes(1 if b in hi_set else 0 for b in range(256))
        self._lo_flag = bytes(1 if b & lo_mask == lo_mask else 0 for b in range(256))

    def any_nonfinite(self, block: bytes) -> bool:
        """True when one of the little-endian values in ``block`` (whole values only) is a NaN or an infinity."""
        hi = block[self.hi :: self.size]
        if not any(b in hi for b in self._maybe):
            return False
        if self.lo is None:
            return True
        lo = block[self.lo :: self.size]
        maybe = int.from_bytes(hi.translate(self._hi_flag), "little")
        return maybe & int.from_bytes(lo.translate(self._lo_flag), "little") != 0


_ALL_ONES_7 = frozenset({0x7F, 0xFF})  # sign bit either way, the top 7 exponent bits set
FORMATS: dict[str, _Format] = {
    "FloatStorage": _Format(4, 3, _ALL_ONES_7, 2, 0x80),
    "BFloat16Storage": _Format(2, 1, _ALL_ONES_7, 0, 0x80),
    "HalfStorage": _Format(2, 1, frozenset(b for b in range(256) if b & 0x7C == 0x7C)),
    "DoubleStorage": _Format(8, 7, _ALL_ONES_7, 6, 0xF0),
}
_SAFETENSORS = {"F32": "FloatStorage", "BF16": "BFloat16Storage", "F16": "HalfStorage", "F64": "DoubleStorage"}

StatKey = tuple[str, int, int, int, int]


def stat_key(path: Path, st: os.stat_result) -> StatKey:
    return (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class Finiteness:
    """The verdict on one version of a file: ``reason`` None when its weights are finite."""

    reason: str | None
    key: StatKey  # the version looked at: a caller that copied the file compares it with its own stat


_CACHE_SIZE = 64
_cache: collections.OrderedDict[StatKey, str | None] = collections.OrderedDict()
_by_digest: dict[str, str] = {}  # content digests (home's manifests) known to hold non-finite weights
_lock = threading.Lock()


def nonfinite(path: str | os.PathLike[str]) -> str | None:
    """None when every float of the model's and the EMA's weights is finite; else one line naming the first
    tensor that is not. Raises CheckpointInvalid when the file cannot be read, or changes while it is."""
    return check(path).reason


def check(path: str | os.PathLike[str]) -> Finiteness:
    p = Path(path)
    try:
        key = stat_key(p, p.stat())
    except OSError as err:
        raise CheckpointInvalid(f"cannot read checkpoint {p}: {err.strerror or err}") from err
    with _lock:
        if key in _cache:
            return Finiteness(_cache[key], key)
    bad = _scan(p)
    try:
        after = stat_key(p, p.stat())
    except OSError as err:
        raise CheckpointInvalid(f"cannot read checkpoint {p}: {err.strerror or err}") from err
    if after != key:
        raise CheckpointInvalid(f"checkpoint {p} changed while its weights were read")
    reason = None if bad is None else f"{p.name} holds non-finite weights (NaN or infinity, first in {bad})"
    with _lock:
        _cache[key] = reason
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return Finiteness(reason, key)


def vouch(path: str | os.PathLike[str]) -> None:
    """``path`` was just renamed from a file found finite (a rename changes its ctime, so its key): remember it."""
    p = Path(path)
    with contextlib.suppress(OSError), _lock:
        _cache[stat_key(p, p.stat())] = None


def remember_digest(digest: str, reason: str) -> None:
    """A durable checkpoint on home (by its manifest's digest) found non-finite once: never copied again."""
    with _lock:
        _by_digest[digest] = reason


def known_nonfinite(digest: str) -> str | None:
    with _lock:
        return _by_digest.get(digest)


def _scan(p: Path) -> str | None:
    """The name of the first tensor with a non-finite value; None when there is none."""
    try:
        if p.name.endswith(".safetensors"):
            return _scan_safetensors(p)
        with p.open("rb") as raw, zipfile.ZipFile(raw) as archive:
            entries = {info.filename: info for info in archive.infolist()}
            prefix, pkl = pickle_entry(p, entries)
            unpickler = InertUnpickler(archive.read(pkl))
            document = unpickler.load()
            seen: dict[str, bool] = {}
            for name, key in _tensors(document):
                storage = unpickler.storages.get(key)
                fmt = FORMATS.get(storage[0]) if storage else None
                if fmt is None:
                    continue
                if key not in seen:
                    seen[key] = _entry_nonfinite(raw.fileno(), archive, entries[f"{prefix}/data/{key}"], fmt)
                if seen[key]:
                    return name
    except CheckpointInvalid:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError, TypeError) as err:
        raise CheckpointInvalid(f"cannot read the weights of checkpoint {p}: {err}") from err
    except Exception as err:
        raise CheckpointInvalid(f"checkpoint {p}: data.pkl rejected ({err})") from err
    return None


def _tensors(document: Any) -> list[tuple[str, str]]:
    """(name, storage key) of every tensor of the state dicts that hold weights, in their order."""
    if not isinstance(document, dict):
        return []
    found: list[tuple[str, str]] = []
    for part in STATE_DICTS:
        state = document.get(part)
        if not isinstance(state, dict):
            continue
        for name, value in state.items():
            if isinstance(value, TensorRef) and value.storage is not None:
                found.append((f"{part}.{name}", value.storage))
    return found


def _entry_nonfinite(fd: int, archive: zipfile.ZipFile, info: zipfile.ZipInfo, fmt: _Format) -> bool:
    """Whether one tensor storage holds a non-finite value. torch.save stores entries uncompressed: their bytes
    are read straight from the file (``pread`` past the local header); a compressed one goes through zipfile."""
    if info.compress_type != zipfile.ZIP_STORED:
        with archive.open(info) as data:
            return _blocks_nonfinite(iter(lambda: data.read(CHUNK), b""), fmt)
    header = os.pread(fd, 30, info.header_offset)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"no local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    start, size = info.header_offset + 30 + name_len + extra_len, info.file_size

    def blocks() -> Iterator[bytes]:
        for offset in range(0, size, CHUNK):
            block = os.pread(fd, min(CHUNK, size - offset), start + offset)
            if not block:
                raise EOFError(f"{info.filename} ends early")
            yield block

    return _blocks_nonfinite(blocks(), fmt)


def _blocks_nonfinite(blocks: Iterable[bytes], fmt: _Format) -> bool:
    tail = b""
    for chunk in blocks:
        block = tail + chunk if tail else chunk
        whole = len(block) - len(block) % fmt.size
        if fmt.any_nonfinite(block[:whole] if whole != len(block) else block):
            return True
        tail = block[whole:]
    return False


def _scan_safetensors(p: Path) -> str | None:
    with p.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        for name, entry in header.items():
            fmt = FORMATS.get(_SAFETENSORS.get(entry.get("dtype", ""), "")) if isinstance(entry, dict) else None
            if fmt is None:
                continue
            start, end = entry["data_offsets"]
            handle.seek(8 + length + start)
            left = end - start
            while left > 0:
                block = handle.read(min(CHUNK, left))
                if not block:
                    raise CheckpointInvalid(f"checkpoint {p} ends inside tensor {name}")
                left -= len(block)
                if fmt.any_nonfinite(block[: len(block) - len(block) % fmt.size]):
                    return str(name)
    return None
