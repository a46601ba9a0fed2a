"""The status report: daemon, lease and every run's stages, as one JSON-ready dict.

Built from files only (pidfile, work-dir flock, state copies, lease marker) so that it works with no daemon
running — the after-reconnect case — and never imports torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import time
from pathlib import Path
from typing import Any, TypedDict

from f5guard import pidfile
from f5guard.checkpoints.durable import list_durable
from f5guard.layout import HomeLayout, WorkLayout
from f5guard.lease.claims import RuntimeId, Sighting
from f5guard.lease.info import claims_now
from f5guard.schema import Config, RunConfig
from f5guard.state import (
    BatchOverride,
    CloudNote,
    DaemonNote,
    ExportNote,
    PrecisionOverride,
    QuarantineNote,
    RestoreNote,
    RunRecord,
    RunStatus,
    SampleNote,
    StageRecord,
    StageStatus,
    StateDoc,
    StateStore,
    SupersedeNote,
    TrainingRecord,
)
from f5guard.status.cloud import cloud_note
from f5guard.trainevents import SetupNote


class DaemonReport(TypedDict):
    running: bool
    pid: int | None
    host: str | None
    phase: str | None
    uptime_s: float | None
    epoch: int | None
    heartbeat_age_s: float | None
    last_known: DaemonNote | None  # who wrote the state last (also when no daemon runs here)
    home_problem: str | None
    work_problem: str | None  # the work dir cannot be written (a full disk)
    config_note: str | None  # the config file changed or broke under the running daemon
    last_exit: ExitReport | None  # how the previous daemon here ended (only when none runs now)
    idle_with_failures: bool  # the daemon runs, nothing is running, and a run failed


class ExitReport(TypedDict):
    at: float
    pid: int
    reason: str
    crashed: bool


class LeaseReport(TypedDict):
    """The claim that owns home now (lease/claims.py), as this view of home shows it."""

    host: str
    pid: int
    epoch: int
    heartbeat_age_s: float
    same_host: bool
    pid_alive: bool | None


class ClaimReport(TypedDict):
    """One runtime's claim on home (lease/claims.py); more than one live claim means two runtimes met."""

    runtime: str
    host: str
    pid: int
    epoch: int
    live: bool
    released: bool
    heartbeat_age_s: float | None


class ItemsReport(TypedDict):
    done: int | None
    total: int
    eta_s: float | None


class _StageReportBase(TypedDict):
    name: str
    state: str
    duration_s: float | None
    reason: str | None
    restarts: int
    last_exit: str | None
    last_failure: str | None
    last_lines: list[str]  # only for a failed or FATAL stage
    restart_in_s: float | None  # a restart is pending (backoff): no attempt runs now


class StageReport(_StageReportBase, total=False):
    items: ItemsReport  # only for stages that report item progress


class TrainingReport(TypedDict):
    """The run's TrainingRecord as status shows it (restarts and exits are the train stage's StageReport)."""

    stage: str  # the run's train stage (watch draws its bar from these figures)
    update: int | None
    total_updates: int | None
    loss: float | None
    updates_per_s: float | None
    eta_s: float | None  # from the update, the total and the rate
    epoch: int | None
    durable_update: int | None
    durable_age_s: float | None
    durable_size: int | None
    durable_path: str | None
    sync_warning: str | None
    sync_error: str | None
    waiting: str | None
    superseded: SupersedeNote | None
    quarantined: list[QuarantineNote]
    restored: RestoreNote | None
    export: ExportNote | None
    sample: SampleNote | None  # the newest audio sample (sample_every)
    setup: SetupNote | None  # the built-in trainer's device, precision and batch
    batch_override: BatchOverride | None  # a smaller batch set after a CUDA OOM
    precision_override: PrecisionOverride | None  # a safer precision set after a non-finite loss
    processes: int | None
    cloud: CloudNote  # what of home reached the cloud, on the store's evidence now (status/cloud.py)


class RunReport(TypedDict):
    name: str
    state: str
    reason: str | None
    stages: list[StageReport]
    training: TrainingReport | None  # runs with a train stage


class StateReport(TypedDict):
    source: str | None
    written_at: float | None
    generation: int
    epoch: int
    problems: list[str]


class StatusReport(TypedDict):
    """What ``status --json`` prints and the renderer draws (docs/operators.md lists the keys)."""

    daemon: DaemonReport
    lease: LeaseReport | None
    claims: list[ClaimReport]  # every claim in this view of home, lowest (epoch, runtime) first
    home: str
    work: str
    state: StateReport
    runs: list[RunReport]


def build_report(config: Config, now: float | None = None) -> StatusReport:
    """The report from files (no daemon here, or one that does not answer): pidfile, flock, state copies."""
    work, home = WorkLayout(config.work), HomeLayout(config.home)
    info = pidfile.running_daemon(work.lock, work.pidfile)
    loaded = StateStore(work.state, home.lease_dir).load()
    return assemble(config, loaded.doc, info, loaded.source, loaded.problems, now)


def assemble(config: Config, doc: StateDoc, info: pidfile.DaemonInfo | None, source: Path | None,
             problems: tuple[str, ...], now: float | None = None) -> StatusReport:  # fmt: skip
    """The report from a state document: one read from files, or the live daemon's own (status answered from
    its memory); ``info`` is the daemon running here, if one does."""
    now = time.time() if now is None else now
    work, home = WorkLayout(config.work), HomeLayout(config.home)
    sightings = claims_now(home, config.lease.duration_s)
    live = [s for s in sightings if s.live]
    owner = live[-1] if live else None
    lease = None
    if owner is not None:
        runtime = owner.claim.runtime
        same = runtime.same_machine(RuntimeId.here())
        lease = LeaseReport(
            host=runtime.host,
            pid=runtime.pid,
            epoch=owner.claim.epoch,
            heartbeat_age_s=round(owner.heartbeat_age_s or 0.0, 1),
            same_host=same,
            pid_alive=runtime.alive_here() if same else None,
        )
    runs = [
        RunReport(
            name=run.name,
            state=_run_state(record, supervised=info is not None),
            reason=record.reason if record else None,
            stages=[
                _stage(stage.name, record.stages.get(stage.name) if record else None, now, supervised=info is not None)
                for stage in run.stages
            ],
            training=_training(config, run, record.training if record else None, now, supervised=info is not None),
        )
        for run in config.runs
        for record in [doc.runs.get(run.name)]
    ]
    idle = info is not None and all(r["state"] not in ("running", "pending") for r in runs)
    return StatusReport(
        daemon=_daemon(
            info, owner, doc, work, now, idle_with_failures=idle and any(r["state"] in _FAILED_RUNS for r in runs)
        ),
        lease=lease,
        claims=[
            ClaimReport(
                runtime=s.claim.runtime.name,
                host=s.claim.runtime.host,
                pid=s.claim.runtime.pid,
                epoch=s.claim.epoch,
                live=s.live,
                released=s.claim.released,
                heartbeat_age_s=None if s.heartbeat_age_s is None else round(s.heartbeat_age_s, 1),
            )
            for s in sightings
        ],
        home=str(config.home),
        work=str(config.work),
        state=StateReport(
            source=str(source) if source else None,
            written_at=doc.written_at or None,
            generation=doc.generation,
            epoch=doc.epoch,
            problems=list(problems),
        ),
        runs=runs,
    )


def _daemon(info: pidfile.DaemonInfo | None, owner: Sighting | None, doc: StateDoc, work: WorkLayout, now: float, *,
            idle_with_failures: bool) -> DaemonReport:  # fmt: skip
    return DaemonReport(
        running=info is not None,
        pid=info.pid if info else None,
        host=info.host if info else None,
        phase=("frozen" if info.pid > 0 and pidfile.frozen(info.pid) else info.phase) if info else None,
        uptime_s=round(now - info.started_at, 1) if info else None,
        epoch=(info.epoch or doc.epoch) if info else None,
        heartbeat_age_s=round(owner.heartbeat_age_s, 1) if owner and owner.heartbeat_age_s is not None else None,
        last_known=doc.daemon or None,
        home_problem=doc.daemon.get("home_problem") if info else None,
        work_problem=doc.daemon.get("work_problem") if info else None,
        config_note=doc.daemon.get("config_note") if info else None,
        last_exit=_last_exit(work, doc) if info is None else None,
        idle_with_failures=idle_with_failures,
    )


def _last_exit(work: WorkLayout, doc: StateDoc) -> ExitReport | None:
    note = pidfile.read_exit(work.exit_note)
    stale = pidfile.read(work.pidfile)  # no lock holds it: a daemon that died before removing it
    if stale is not None and (note is None or note.at < stale.started_at):
        # That life left no note (SIGKILL, the OOM killer, the machine): never show an older life's reason as its.
        seen = [stale.started_at, *_mtime(work.pidfile)]
        if doc.daemon.get("pid") == stale.pid and isinstance(doc.written_at, (int, float)):
            seen.append(doc.written_at)
        reason = "it left no exit note: killed by SIGKILL or the OOM killer, or the machine went down"
        return ExitReport(at=max(seen), pid=stale.pid, reason=reason, crashed=True)
    if note is None:
        return None
    return ExitReport(at=note.at, pid=note.pid, reason=note.reason, crashed=note.crashed)


def _mtime(path: Path) -> list[float]:
    try:
        return [path.stat().st_mtime]
    except OSError:
        return []


def _run_state(record: RunRecord | None, *, supervised: bool) -> str:
    state = record.state if record else RunStatus.PENDING
    if state is RunStatus.RUNNING and not supervised:
        return "interrupted"  # state was written by a daemon that is gone
    return state.value


def _stage(name: str, srec: StageRecord | None, now: float, *, supervised: bool) -> StageReport:
    state = srec.state if srec else StageStatus.PENDING
    duration = srec.duration_s if srec else None
    reason = srec.reason if srec else None
    restart_in = None
    if srec and state is StageStatus.RUNNING:
        if not supervised:  # what state says was running has no supervisor now: it is not running
            state, reason = StageStatus.INTERRUPTED, "its supervisor is not running (stopped or died)"
        else:
            duration = round(now - srec.started_at, 1) if srec.started_at else None
            restart_in = round(max(0.0, srec.restart_at - now), 1) if srec.restart_at else None
    entry = StageReport(
        name=name,
        state=state.value,
        duration_s=duration,
        reason=reason,
        restarts=srec.restarts if srec else 0,
        last_exit=srec.last_exit if srec else None,
        last_failure=srec.last_failure if srec else None,
        last_lines=srec.last_lines if srec and state in (StageStatus.FAILED, StageStatus.FATAL) else [],
        restart_in_s=restart_in,
    )
    if srec and srec.items_total is not None:
        entry["items"] = ItemsReport(done=srec.items_done, total=srec.items_total, eta_s=srec.items_eta_s)
    return entry


def _training(config: Config, run: RunConfig, record: TrainingRecord | None, now: float, *,
              supervised: bool) -> TrainingReport | None:  # fmt: skip
    """The train stage's figures; the durable checkpoint is read from home when state knows none (fresh VM), or
    when the file state names is not there as state says (status says "safe" only of what it checked)."""
    if not any(s.kind == "train" for s in run.stages):
        return None
    home = HomeLayout(config.home)
    t = record or TrainingRecord()
    durable_update, synced_at, size, path = t.durable_update, t.durable_synced_at, t.durable_size, t.durable_path
    warning = t.sync_warning
    if durable_update is not None and not _on_home(path, size):
        name = f"{Path(str(path)).name} (update {durable_update})"
        warning = (
            f"state names {name} on home, but it is missing, empty or not what was synced"
            if home.root.is_dir()
            else f"cannot check {name}: home {home.root} is not there (Drive unmounted?)"
        )
        durable_update = synced_at = size = path = None
    if durable_update is None:
        durable = list_durable(home.checkpoints(run.name))
        if durable:
            newest = durable[-1]
            durable_update, synced_at, size, path = newest.update, newest.synced_at, newest.size, str(newest.path)
    return TrainingReport(
        stage=next(s.name for s in run.stages if s.kind == "train"),
        update=t.update,
        total_updates=t.total_updates,
        loss=t.loss,
        # A speed and an ETA describe a trainer that runs: none while the daemon is gone or training waits.
        updates_per_s=t.updates_per_s if supervised and not t.waiting else None,
        eta_s=_eta(t) if supervised and not t.waiting else None,
        epoch=t.epoch,
        durable_update=durable_update,
        durable_age_s=round(now - synced_at, 1) if isinstance(synced_at, (int, float)) else None,
        durable_size=size,
        durable_path=path,
        sync_warning=warning,
        sync_error=t.sync_error,
        waiting=t.waiting,
        superseded=t.superseded,
        quarantined=list(t.quarantined),
        restored=t.restored,
        export=t.export,
        sample=t.sample if t.sample is not None else _sample_on_home(run, home),
        setup=t.setup,
        batch_override=t.batch_override,
        precision_override=t.precision_override,
        processes=t.processes,
        cloud=cloud_note(config, run, t.cloud, supervised=supervised),
    )


def _eta(t: TrainingRecord) -> float | None:
    if t.update is None or not t.total_updates or not t.updates_per_s:
        return None
    return round(max(0.0, (t.total_updates - t.update) / t.updates_per_s), 1)


def _on_home(path: str | None, size: int | None) -> bool:
    """The checkpoint file state names is a regular file on home, of the size that was synced (0 never is)."""
    if not path:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size > 0 and (size is None or st.st_size == size)


def _sample_on_home(run: RunConfig, home: HomeLayout) -> SampleNote | None:
    """No daemon has reported one here (a fresh VM): the newest sample on home, when the run makes samples."""
    if not any(getattr(s.options, "sample_every", 0) for s in run.stages):
        return None
    from f5guard.training.sampler import newest_sample

    found = newest_sample(home.samples_dir(run.name))
    if found is None:
        return None
    return SampleNote(update=found.update, path=str(found.path), seconds=found.seconds, running=None, error=None)


def to_json(report: StatusReport) -> str:
    """``status --json``: the report with its typed notes (dataclasses) as JSON objects."""
    return json.dumps(report, indent=2, ensure_ascii=False, default=_plain) + "\n"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def exit_code(report: StatusReport) -> int:
    """0 while a daemon runs here and no run failed; 1 otherwise (scripts can `f5guard status || ...`)."""
    if not report["daemon"]["running"]:
        return 1
    return 1 if any(run["state"] in _FAILED_RUNS for run in report["runs"]) else 0


_FAILED_RUNS = (RunStatus.FATAL.value, RunStatus.FAILED.value)
