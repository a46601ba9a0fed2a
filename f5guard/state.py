"""The state document: what every run and stage did, written atomically to work and mirrored to home.

Only the daemon writes it. Home copies are named by epoch and runtime (``state-e0003-<runtime>.json``): no two
runtimes ever write one file (on Drive, one would silently win), and a daemon that lost a takeover can never
overwrite the new owner's copy. Loading takes the newest valid copy by (epoch, runtime, generation), the order
claims use (lease/claims.py), never by mtime, and survives a corrupt or truncated one.
"""

from __future__ import annotations

import contextlib
import enum
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from f5guard.errors import StateError
from f5guard.fsutil import atomic_write_json, read_regular
from f5guard.readback import checked_fields, conforms, counted, epoch_in_name, epoch_of
from f5guard.trainevents import SetupNote, setup_from

SCHEMA_VERSION = 1
STATE_MOST = 64 * 1024 * 1024  # a state copy larger than this is not one f5guard wrote
_HOME_NAME = re.compile(r"^state-e(\d+)(?:-(.+))?\.json$")  # no runtime part: written before claims existed


class StageStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    FATAL = "fatal"  # a long-running stage that exhausted its restart budget or failed the same way twice
    INTERRUPTED = "interrupted"  # was running when its daemon died or stopped; reruns on the next start


_ENDED = (StageStatus.DONE, StageStatus.FAILED, StageStatus.FATAL, StageStatus.INTERRUPTED)


class RunStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    FATAL = "fatal"
    STOPPED = "stopped"


@dataclass
class StageRecord:
    """One stage's last known outcome; ``fingerprint`` and ``outputs`` decide whether it may be skipped."""

    state: StageStatus = StageStatus.PENDING
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    fingerprint: str | None = None  # of the last run that exited 0
    fingerprint_parts: dict[str, Any] = field(default_factory=dict)  # what went into it, to say what changed
    outputs: dict[str, str] = field(default_factory=dict)  # path -> signature at completion
    boot_id: str | None = None  # runtime-scoped stages are only up to date on the machine that ran them
    reason: str | None = None
    last_lines: list[str] = field(default_factory=list)
    attempts: int = 0
    restarts: int = 0
    last_exit: str | None = None
    last_failure: str | None = None  # what went wrong in the attempt that caused the latest restart (for people)
    pid: int | None = None  # leader of the running attempt's process group
    pid_started: float | None = None  # its create time: tells our leftover group from a reused pid
    restart_at: float | None = None  # wall clock of a pending restart (backoff): no attempt runs meanwhile
    items_done: int | None = None  # item-level progress for long per-item stages
    items_total: int | None = None
    items_eta_s: float | None = None

    def move(self, state: StageStatus, reason: str | None, now: float | None = None) -> None:
        """The one way a stage's state changes; starting and ending also set the times, ending clears the pid."""
        now = time.time() if now is None else now
        self.state, self.reason = state, reason
        if state is StageStatus.RUNNING:
            self.started_at, self.finished_at, self.duration_s = now, None, None
        elif state in _ENDED:
            self.finished_at = now
            self.duration_s = round(now - (self.started_at or now), 3)
            self.pid = self.pid_started = self.restart_at = None


class QuarantineNote(TypedDict):
    """A corrupt checkpoint moved aside (kept, never deleted)."""

    name: str
    moved_to: str
    reason: str
    at: float


class RestoreNote(TypedDict):
    """The checkpoint this VM took from home before training."""

    update: int
    epoch: int
    at: float


class SupersedeNote(TypedDict):
    """Checkpoints set aside because the dataset's vocab changed under them."""

    moved_to: str
    old_vocab: int
    vocab: int


class ExportNote(TypedDict):
    """The inference copy on home (EMA, fp16) and the export in flight."""

    update: int | None
    path: str | None
    size: int | None
    running: int | None  # the update being exported now
    error: str | None


class SampleNote(TypedDict):
    """The newest audio sample of the training (``sample_every``) and the one being made."""

    update: int | None
    path: str | None  # {home}/runs/<run>/samples/u<update>.wav, its .json note beside it
    seconds: float | None  # how long making it took
    running: int | None  # the update being sampled now
    error: str | None


class BatchOverride(TypedDict):
    """A smaller batch f5guard set after CUDA OOMs (same effective batch through gradient accumulation).

    Kept with the run so a restarted daemon applies it too; ``config_batch``/``config_accum`` are what the config
    said then: once the config says something else, the user decided and the override no longer applies."""

    batch_size_per_gpu: int
    grad_accumulation_steps: int
    from_batch: int  # the batch of the attempt that ran out of memory
    from_accum: int
    batch_size_type: str
    update: int | None  # the last update finished before the OOM
    reason: str
    at: float
    config_batch: int | str  # the stage's batch_size_per_gpu (an int or "auto") it overrides
    config_accum: int


class PrecisionOverride(TypedDict):
    """A safer precision f5guard set after the loss went non-finite (the NaN guard): fp16 -> bf16 -> fp32 ("no").

    Kept with the run so a restarted daemon applies it too; ``config_precision`` is the stage's mixed_precision
    then: once the config says something else, the user decided and the override no longer applies."""

    precision: str  # accelerate's mixed_precision the next attempts run with: bf16 | no
    from_precision: str  # the precision of the attempt that went non-finite
    update: int | None  # where the loss (or the parameters) went non-finite
    lr: float | None  # the learning rate there
    reason: str  # "a non-finite loss at update N"
    at: float
    config_precision: str  # the stage's mixed_precision it overrides (auto, fp16, bf16)


def precision_change(o: PrecisionOverride) -> str:
    """e.g. "precision fp16 -> fp32 after a non-finite loss at update 7 (learning rate 8.3e-05)"."""
    lr = f" (learning rate {o['lr']:.2g})" if o["lr"] is not None else ""
    frm, to = precision_name(o["from_precision"]), precision_name(o["precision"])
    return f"precision {frm} -> {to} after {o['reason']}{lr}"


def precision_name(precision: str) -> str:
    """accelerate's "no" (no mixed precision) is fp32."""
    return "fp32" if precision == "no" else precision


class LostNote(TypedDict):
    """A checkpoint a runtime that is gone recorded while it was still uploading: it never left that VM."""

    update: int
    writer: str  # its host
    resumed_from: int  # the newest that reached the cloud, where this runtime resumed instead
    line: str  # what the stage log said (cloud/records.py lost_line)


class CloudNote(TypedDict):
    """Home's checkpoints against the cloud (f5guard/cloud/): the newest in it, the one uploading, the rate.

    ``durable_*`` on the record say what is on home (on Drive: in this VM's cache); this says what reached the
    cloud, on the store's evidence (``kind`` drive), on an estimate (writeback) or at once (local)."""

    kind: str  # local | drive | writeback
    how: str  # why that kind (cloud/detect.py)
    host: str  # the VM that wrote this note (a new runtime inherits the record of the one before it)
    confirmed_update: int | None  # the newest checkpoint in the cloud
    confirmed_at: float | None  # since when (its writer's clock), where known
    confirmed_estimated: bool  # an estimate from age and size, not the store's answer
    uploading_update: int | None  # the newest checkpoint on home still uploading
    uploading_since: float | None
    uploading_bytes: int | None
    rate_bytes_per_s: float | None  # measured on the last upload that finished, else the configured estimate
    rate_measured: bool
    held_back: int | None  # a newer local checkpoint this VM keeps until the upload is done (pacing)
    lost: LostNote | None


@dataclass
class TrainingRecord:
    """The train stage's figures as status shows them, also after the daemon is gone (fresh VM).

    The trainer's events are folded straight into it (training/progress.py); restarts and exits are the
    stage's (StageRecord), never copied here."""

    update: int | None = None  # the last finished update the trainer reported
    total_updates: int | None = None
    loss: float | None = None
    updates_per_s: float | None = None
    epoch: int | None = None
    durable_update: int | None = None  # the newest checkpoint verified on home
    durable_synced_at: float | None = None
    durable_size: int | None = None
    durable_path: str | None = None
    sync_warning: str | None = None
    sync_error: str | None = None
    waiting: str | None = None  # why training has not started yet (settling, a checkpoint still on its way)
    restored: RestoreNote | None = None
    superseded: SupersedeNote | None = None
    quarantined: list[QuarantineNote] = field(default_factory=list)
    export: ExportNote | None = None
    sample: SampleNote | None = None
    setup: SetupNote | None = None  # the built-in trainer's device, precision and batch (its latest start event)
    batch_override: BatchOverride | None = None  # set after a CUDA OOM (training/oom.py)
    precision_override: PrecisionOverride | None = None  # set after a non-finite loss (the NaN guard)
    processes: int | None = None  # ranks of the current training (num_processes), when the trainer said
    cloud: CloudNote | None = None  # what of home reached the cloud (f5guard/cloud/, checkpoints/uploads.py)


class DaemonNote(TypedDict, total=False):
    """Who wrote the document last; ``home_problem`` while home does not answer."""

    pid: int
    host: str
    started_at: float
    boot_id: str
    version: str
    runtime: str  # the claim's runtime name (lease/claims.py): orders two copies of one epoch
    home_problem: str | None
    work_problem: str | None  # the work dir cannot be written (a full disk): the home copy says so
    config_note: str | None  # the config file changed (or broke) under the running daemon


@dataclass
class RunRecord:
    state: RunStatus = RunStatus.PENDING
    stages: dict[str, StageRecord] = field(default_factory=dict)
    reason: str | None = None
    training: TrainingRecord | None = None  # filled by the train stage


@dataclass
class StateDoc:
    """The whole document. ``daemon`` is the last writer, so status can say who ran here and when."""

    schema: int = SCHEMA_VERSION
    generation: int = 0
    epoch: int = 0
    written_at: float = 0.0
    daemon: DaemonNote = field(default_factory=DaemonNote)
    runs: dict[str, RunRecord] = field(default_factory=dict)

    def run(self, name: str) -> RunRecord:
        return self.runs.setdefault(name, RunRecord())

    def stage(self, run: str, stage: str) -> StageRecord:
        return self.run(run).stages.setdefault(stage, StageRecord())

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(json.dumps(asdict(self), default=_enum_value))  # enums -> values, deep
        return doc


def _enum_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def doc_from_json(data: Any, problems: list[str] | None = None) -> StateDoc:
    """Build a StateDoc from parsed JSON; raises ValueError (corrupt) or StateError (too new).

    A copy whose identity (schema, epoch, generation, time) is off is corrupt; a record or figure of the wrong
    type (a string where a number belongs, NaN) is dropped to its default and named in ``problems``: one bad
    value must not cost the fingerprints of every stage, nor reach ``status`` as a traceback."""
    problems = [] if problems is None else problems
    if not isinstance(data, dict) or type(data.get("schema")) is not int:
        raise ValueError("not an f5guard state document (no integer 'schema')")
    if data["schema"] > SCHEMA_VERSION:
        raise StateError(
            f"written by a newer f5guard (schema {data['schema']} > {SCHEMA_VERSION}); upgrade f5guard to read it"
        )
    for key, ok in (("epoch", epoch_of), ("generation", lambda v: counted(v, 2**62))):
        if key in data and ok(data[key]) is None:
            raise ValueError(f"malformed state document: {key} = {str(data[key])[:40]!r} is not a plausible count")
    top = checked_fields(StateDoc, {k: v for k, v in data.items() if k != "runs"}, "state", problems)
    bad = [key for key in ("generation", "epoch", "written_at") if key in data and key not in top]
    if bad:  # what orders the copies: without it this one cannot be weighed against the others
        raise ValueError(f"malformed state document: {', '.join(bad)} of the wrong type")
    raw_runs = data.get("runs", {})
    runs: dict[str, RunRecord] = {}
    if not isinstance(raw_runs, dict):
        problems.append("state.runs is not a table; ignored")
        raw_runs = {}
    for run_name, run in raw_runs.items():
        record = _run_from_json(str(run_name), run, problems)
        if record is not None:
            runs[str(run_name)] = record
    return StateDoc(**{**top, "runs": runs})


def _run_from_json(name: str, run: Any, problems: list[str]) -> RunRecord | None:
    where = f"runs.{name}"
    if not isinstance(run, dict) or not conforms(run.get("state"), RunStatus):
        problems.append(f"{where} has no valid state; ignored")
        return None
    stages: dict[str, StageRecord] = {}
    raw_stages = run.get("stages", {})
    for stage_name, raw in raw_stages.items() if isinstance(raw_stages, dict) else ():
        if not isinstance(raw, dict) or not conforms(raw.get("state"), StageStatus):
            problems.append(f"{where}.stages.{stage_name} has no valid state; ignored (it runs again)")
            continue
        fields_ = checked_fields(StageRecord, raw, f"{where}.stages.{stage_name}", problems)
        stages[str(stage_name)] = StageRecord(**{**fields_, "state": StageStatus(raw["state"])})
    training = run.get("training")
    if training is not None and not isinstance(training, dict):
        problems.append(f"{where}.training is not a table; ignored")
        training = None
    fields_ = checked_fields(RunRecord, {k: v for k, v in run.items() if k in ("reason",)}, where, problems)
    return RunRecord(
        **fields_,
        state=RunStatus(run["state"]),
        stages=stages,
        training=None if training is None else _training(training, f"{where}.training", problems),
    )


def _training(data: dict[str, Any], where: str, problems: list[str]) -> TrainingRecord:
    record = TrainingRecord(**checked_fields(TrainingRecord, {k: v for k, v in data.items() if k != "setup"},
                                             where, problems))  # fmt: skip
    record.setup = setup_from(data.get("setup"))  # a typed note again (an older file: whatever it held)
    return record


@dataclass(frozen=True)
class LoadedState:
    doc: StateDoc
    source: Path | None  # None: no copy existed, a fresh document
    problems: tuple[str, ...]  # one line per copy that could not be read, for the log and status


class StateStore:
    """Reads and writes the state copies; the daemon owns the only instance that writes."""

    def __init__(self, work_path: Path, home_dir: Path, *, mirror_interval_s: float = 10.0, runtime: str = "") -> None:
        self.work_path = work_path
        self.home_dir = home_dir
        self.runtime = runtime  # names this daemon's home copies; empty for readers
        self.mirror_interval_s = mirror_interval_s
        self._last_mirror = 0.0
        self._home_dirty = False

    def home_path(self, epoch: int) -> Path:
        return self.home_dir / f"state-e{epoch:04d}{'-' + self.runtime if self.runtime else ''}.json"

    def home_copies(self) -> list[Path]:
        """Every home copy, lowest (epoch, runtime) first."""
        try:
            found = [(m, p) for p in self.home_dir.iterdir() if (m := _HOME_NAME.match(p.name))]
        except OSError:
            return []
        return [p for m, p in sorted(found, key=lambda mp: (int(mp[0][1]), mp[0][2] or ""))]

    def highest_epoch(self) -> int:
        """The highest epoch a home copy is named by: a new owner's epoch goes above it."""
        epochs = [epoch_in_name(m[1]) for p in self.home_copies() if (m := _HOME_NAME.match(p.name))]
        return max((e for e in epochs if e is not None), default=0)

    def load(self) -> LoadedState:
        """The newest valid copy by (epoch, writer, generation); corrupt copies are reported, a too-new one refused."""
        problems: list[str] = []
        best: tuple[tuple[int, str, int], StateDoc, Path] | None = None
        for path in [self.work_path, *reversed(self.home_copies())]:
            try:
                raw = read_regular(path, STATE_MOST)
            except FileNotFoundError:
                continue
            except OSError as err:
                problems.append(f"state copy {path} unreadable: {err.strerror or err}")
                continue
            found: list[str] = []
            try:
                doc = doc_from_json(json.loads(raw.decode("utf-8")), found)
            except StateError as err:
                raise StateError(f"state at {path}: {err.message}") from err
            except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, absurd nesting
                problems.append(f"state copy {path} is corrupt ({' '.join(str(err).split())[:200]}); ignoring it")
                continue
            problems.extend(f"state copy {path}: {problem}" for problem in found[:5])
            key = (doc.epoch, str(doc.daemon.get("runtime", "")), doc.generation)
            if best is None or key > best[0]:
                best = (key, doc, path)
        if best is None:
            return LoadedState(StateDoc(), None, tuple(problems))
        return LoadedState(best[1], best[2], tuple(problems))

    def trainings(self, run: str, superseded: SupersedeNote | None = None) -> list[tuple[TrainingRecord, str]]:
        """``run``'s training record in every readable copy (any epoch, any runtime), with the host that wrote
        it: what each says is durable and in the cloud (cloud/records.py judges it: never backwards). Only
        copies of the same training count: once a vocab change set the checkpoints aside (``superseded``),
        older records describe the old one."""
        found: list[tuple[TrainingRecord, str]] = []
        for path in [self.work_path, *self.home_copies()]:
            with contextlib.suppress(OSError, ValueError, StateError, RecursionError):
                doc = doc_from_json(json.loads(read_regular(path, STATE_MOST)))
                record = doc.runs.get(run)
                training = record.training if record is not None else None
                if training is not None and training.superseded == superseded:
                    found.append((training, str(doc.daemon.get("host", ""))))
        return found

    def save(self, doc: StateDoc, *, mirror: bool = False) -> None:
        """Write the work copy (every change), and the home copy too when ``mirror``."""
        doc.generation += 1
        doc.written_at = time.time()
        atomic_write_json(self.work_path, doc.to_json())
        self._home_dirty = True
        if mirror:
            self.write_home(doc)

    def home_due(self) -> bool:
        """Home is rate-limited: Drive may never upload a file rewritten constantly."""
        return self._home_dirty and time.monotonic() - self._last_mirror >= self.mirror_interval_s

    def write_home(self, doc: StateDoc) -> None:
        """Mirror ``doc`` as it is (same generation as the work copy) to this epoch's home copy."""
        self._last_mirror = time.monotonic()  # a failed write also waits its turn: a failing Drive is slow to fail
        atomic_write_json(self.home_path(doc.epoch), doc.to_json())
        self._home_dirty = False

    def prune_home(self, keep_epoch: int, keep: int = 2) -> None:
        """Drop home copies of old epochs (never the current one); the newest ``keep`` stay for forensics."""
        old = [p for p in self.home_copies() if p != self.home_path(keep_epoch)]
        for path in old[: max(0, len(old) - (keep - 1))]:
            path.unlink(missing_ok=True)
