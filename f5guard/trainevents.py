"""The training process's events, as types: what ``f5guard.trainer`` appends to progress.jsonl and the daemon
folds into the run's TrainingRecord. One definition for both sides, so a field cannot mean two things.

Standard library only: the stack python (another interpreter, maybe without psutil, structlog, ...) writes them.
On disk every event is one JSON line, ``{"event": <kind>, "t": <unix time>, "pid": <writer>, **fields}``,
kept whole by ``f5guard.jsonlines``; no fsync (a lost last update costs nothing). Reading is forgiving: a line
of the wrong shape (a foreign writer, an older f5guard) is skipped, never a crash in the daemon.
"""

from __future__ import annotations

import enum
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from f5guard import jsonlines


class ExitReason(str, enum.Enum):
    """Why the trainer ended, in its own words; the daemon's restart judgment starts from it."""

    FINISHED = "finished"  # the last epoch ended; model_last.pt holds the final update
    STOPPED = "stopped"  # a graceful stop on a signal (``detail`` names it): model_last.pt holds the update
    CUDA_OOM = "cuda_oom"  # torch.cuda.OutOfMemoryError: a smaller batch may fit
    NONFINITE = (
        "nonfinite"  # the NaN guard: the loss stayed NaN/inf for nan_patience updates, or a parameter before a save
    )
    ERROR = "error"  # any other failure; ``detail`` is "<Type>: <message>" or f5guard's own one line
    RANK_FAILED = "rank_failed"  # one rank of a group died; the launcher killed the others


@dataclass(frozen=True)
class SetupNote:
    """How the trainer set itself up for its device (the ``start`` event): what "auto" became."""

    precision: str  # accelerate's mixed_precision in use: no, fp16, bf16
    precision_requested: str  # the stage's mixed_precision (auto, or the same)
    device: str  # the GPU's name, or "cpu"
    gpu_memory_gib: float | None
    batch_size_per_gpu: int
    batch_size_type: str  # frame | sample
    batch_auto: bool  # batch_size_per_gpu = "auto" chose it
    grad_accumulation_steps: int
    bnb_optimizer: bool
    autocast: bool | None = None  # accelerate really runs the forward under torch.autocast (its native_amp)
    bf16_supported: bool | None = None  # bf16 is real on this device (the NaN guard's fp16 -> bf16 step)


@dataclass(frozen=True)
class Quarantined:
    """A checkpoint that cannot resume, moved aside by the trainer before it started (kept, never deleted)."""

    name: str
    moved_to: str
    reason: str


@dataclass(frozen=True)
class Start:
    """Training starts (or resumes) at ``start_update``; the trainer knows its totals only now."""

    start_update: int
    total_updates: int | None = None
    updates_per_epoch: int | None = None
    epochs: int | None = None
    checkpoint: str | None = None  # the file F5-TTS resumed from
    model: str | None = None
    params: int | None = None
    samples: int | None = None
    processes: int = 1  # ranks of the training (num_processes)
    actions: tuple[str, ...] = ()  # what preparing the checkpoint dir did
    quarantined: tuple[Quarantined, ...] = ()
    setup: SetupNote | None = None


@dataclass(frozen=True)
class Ready:
    """Imports, model and dataset are loaded: the trainer waits at its gate (nothing trained or written yet).

    ``start_update`` is where it will resume (None while loading itself waits for the gate: a pretrained file
    must be placed first); ``startup_s`` is how long its start took, process start to here."""

    start_update: int | None = None
    checkpoint: str | None = None  # the file it loaded
    startup_s: float | None = None


@dataclass(frozen=True)
class Update:
    """Update ``update`` finished (at most two a second; a checkpoint's update is always reported)."""

    update: int
    loss: float | None = None  # None when not finite: ``loss_nonfinite`` then holds its text ("nan")
    lr: float | None = None
    updates_per_s: float | None = None
    epoch: int | None = None
    loss_nonfinite: str | None = None


@dataclass(frozen=True)
class Checkpoint:
    """``file`` in the checkpoint dir is complete and holds ``update``."""

    file: str
    update: int
    last: bool
    size: int | None = None


@dataclass(frozen=True)
class ResumeCheck:
    """With F5GUARD_TRAIN_VERIFY_RESUME=1: the state after loading, compared with the file (tests read it)."""

    file: str
    update: int | None = None
    model_equal: bool | None = None
    ema_equal: bool | None = None
    optimizer_equal: bool | None = None
    scheduler_equal: bool | None = None
    adam_step: float | None = None
    dtypes: dict[str, list[str]] = field(default_factory=dict)
    ranks: int | None = None


@dataclass(frozen=True)
class Exit:
    """The trainer ends: why, at which finished update, and in a few words (the signal, the error)."""

    reason: ExitReason
    update: int | None = None
    detail: str | None = None
    processes: int | None = None  # the launcher of a group says how many ranks it ran
    lr: float | None = None  # nonfinite: the learning rate at ``update`` (it or the data is to blame in fp32)


Event = Ready | Start | Update | Checkpoint | ResumeCheck | Exit
KINDS: dict[str, type[Event]] = {
    "ready": Ready,
    "start": Start,
    "update": Update,
    "checkpoint": Checkpoint,
    "resume_check": ResumeCheck,
    "exit": Exit,
}
_KIND_OF = {cls: kind for kind, cls in KINDS.items()}


def kind_of(event: Event) -> str:
    return _KIND_OF[type(event)]


def encode(event: Event, *, t: float | None = None, pid: int | None = None) -> dict[str, Any]:
    """The JSON object of one line (strict JSON: a non-finite float must already be None)."""
    body = asdict(event)
    if isinstance(event, Exit):
        body["reason"] = event.reason.value
    return {"event": kind_of(event), "t": round(time.time() if t is None else t, 3),
            "pid": os.getpid() if pid is None else pid, **body}  # fmt: skip


def decode(record: dict[str, Any]) -> Event | None:
    """The typed event of one parsed line; None for an unknown kind or a field of the wrong type."""
    cls = KINDS.get(str(record.get("event")))
    if cls is None:
        return None
    try:
        if cls is Exit:
            return Exit(
                reason=_reason(record.get("reason")), update=_opt(int, record.get("update")),
                detail=_opt(str, record.get("detail")), processes=_opt(int, record.get("processes")),
                lr=_opt(float, record.get("lr")),
            )  # fmt: skip
        if cls is Start:
            return Start(
                **_simple(Start, record, skip=("actions", "quarantined", "setup")),
                actions=tuple(str(a) for a in record.get("actions") or ()),
                quarantined=tuple(Quarantined(**_simple(Quarantined, q)) for q in record.get("quarantined") or ()),
                setup=setup_from(record.get("setup")),
            )
        if cls is ResumeCheck:
            dtypes = record.get("dtypes") or {}
            return ResumeCheck(**_simple(ResumeCheck, record, skip=("dtypes",)),
                               dtypes={str(k): [str(x) for x in v] for k, v in dict(dtypes).items()})  # fmt: skip
        return cls(**_simple(cls, record))
    except (TypeError, ValueError, AttributeError):
        return None


def setup_from(value: Any) -> SetupNote | None:
    """A ``setup`` object read back (a start event, a state document); None when absent or malformed."""
    if not isinstance(value, dict):
        return None
    try:
        return SetupNote(**_simple(SetupNote, value))
    except (TypeError, ValueError):
        return None


_T = TypeVar("_T")


def _opt(kind: type[_T], value: Any) -> _T | None:
    return None if value is None else _check(kind, value)


def _check(kind: type[_T], value: Any) -> _T:
    """``value`` if it has the type the field declares (an int is a fine float; a bool is no int)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)  # type: ignore[return-value]
        except OverflowError:  # an integer of hundreds of digits is valid JSON, and no figure of ours
            raise TypeError(f"expected a float, got an integer of {len(str(value))} digits") from None
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")


_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def _simple(cls: type, record: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of ``cls`` whose declared type is a plain scalar (``int``, ``float | None``, ...), checked."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in skip or f.name not in record:
            continue
        declared = str(f.type).replace(" ", "").split("|")
        value = record[f.name]
        if value is None and "None" in declared:
            out[f.name] = None
            continue
        kind = _TYPES.get(declared[0])
        if kind is None:
            continue
        out[f.name] = _check(kind, value)
    return out


def _reason(value: Any) -> ExitReason:
    try:
        return ExitReason(value)
    except ValueError:
        return ExitReason.ERROR  # an unknown word (a later f5guard, a foreign writer): a failure, said so


def finite(value: float | None) -> float | None:
    """Strict JSON has no NaN: a non-finite figure is None (and named in ``loss_nonfinite`` for the loss)."""
    return None if value is None or not math.isfinite(value) else value


class EventWriter:
    """Appends events to one progress file, one write + flush per line so a SIGKILL leaves whole lines.

    ``write=False``: a rank other than the main one of a group (trainer/group.py) runs the same hooks, but only
    the main rank reports, so the file holds one training's events, not N interleaved copies.
    """

    def __init__(self, path: str | os.PathLike[str], *, write: bool = True) -> None:
        # NaN is not JSON: events carry non-finite values as None (+ text where it matters)
        self._lines = jsonlines.Appender(path, allow_nan=False) if write else None
        self.path = Path(path)
        self.pid = os.getpid()

    def emit(self, event: Event) -> dict[str, Any]:
        record = encode(event, pid=self.pid)
        if self._lines is not None:
            self._lines.append(record)
        return record

    def close(self) -> None:
        if self._lines is not None:
            self._lines.close()


def read_events(path: str | os.PathLike[str], offset: int = 0) -> tuple[list[Event], int]:
    """The complete events from byte ``offset`` on, and the offset to continue from (a partial line waits)."""
    records, offset = jsonlines.read(path, offset)
    return [e for r in records if (e := decode(r)) is not None], offset


@dataclass(frozen=True)
class Stamped:
    """An event with its envelope: when (Unix time) and which process wrote it."""

    t: float
    pid: int
    event: Event


def read_stamped(path: str | os.PathLike[str], offset: int = 0) -> tuple[list[Stamped], int]:
    """Like ``read_events``, with each event's time and writer (to merge and order copies of one file)."""
    records, offset = jsonlines.read(path, offset)
    found: list[Stamped] = []
    for record in records:
        event = decode(record)
        t, pid = record.get("t"), record.get("pid")
        # a time, not an integer of 40 digits (float() of it overflows)
        if event is not None and isinstance(t, (int, float)) and abs(t) < 1e18 and isinstance(pid, int):
            found.append(Stamped(float(t), pid, event))
    return found, offset


GATE_ENV = "F5GUARD_GATE"  # where a gated command (mode = "command", gated = true) finds its gate file
GATE_POLL_S = 0.05


class Gate:
    """The start gate of a trainer launched while the lease settles: a file that exists once training may begin.

    The trainer loads everything (torch, dataset, model, its checkpoint), reports ``Ready`` and waits here before
    its first optimizer step and its first write to the checkpoint dir; the daemon creates the file when the
    settle period and the wait for lower claims are over, or stops the trainer (SIGTERM) instead. A file, not a
    signal or a pipe: a signal sent before the trainer installed its handler would kill it (SIGUSR1's default)
    or be lost, and a pipe would have to be inherited by every rank of a group; a file the daemon made before
    the trainer looks is simply seen, by any process and by a stand-in written in another language. A stat
    every 50 ms costs nothing next to a training update, and ``ls`` shows the gate's state.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def is_open(self) -> bool:
        return self.path.exists()

    def open(self) -> None:
        """Open the gate (idempotent): creating a file is atomic, so a trainer never sees a half-open gate."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))

    def close(self) -> None:
        """Close it before launching a trainer that must wait (a gate left open by an earlier attempt)."""
        self.path.unlink(missing_ok=True)

    def wait(self, stopped: Callable[[], bool], poll_s: float = GATE_POLL_S) -> bool:
        """Block until the gate opens (True) or ``stopped()`` says the trainer is asked to end (False)."""
        while not self.is_open():
            if stopped():
                return False
            time.sleep(poll_s)
        return True
