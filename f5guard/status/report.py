"""The status report: daemon, lease and every run's stages, as one JSON-ready dict.

Built from files only (pidfile, work-dir flock, state copies, lease marker) so that it works with no daemon
running — the after-reconnect case — and never imports torch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from f5guard import pidfile
from f5guard.layout import HomeLayout, WorkLayout
from f5guard.lease.info import current_holder
from f5guard.schema import Config, RunConfig
from f5guard.state import RunStatus, StageStatus, StateStore


def build_report(config: Config, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    work, home = WorkLayout(config.work), HomeLayout(config.home)
    info = pidfile.running_daemon(work.lock, work.pidfile)
    holder = current_holder(home)
    loaded = StateStore(work.state, home.lease_dir).load()
    doc = loaded.doc
    daemon: dict[str, Any] = {
        "running": info is not None,
        "pid": info.pid if info else None,
        "host": info.host if info else None,
        "phase": info.phase if info else None,
        "uptime_s": round(now - info.started_at, 1) if info else None,
        "epoch": (info.epoch or doc.epoch) if info else None,
        "heartbeat_age_s": round(holder.heartbeat_age_s, 1) if holder and holder.heartbeat_age_s is not None else None,
        "last_known": doc.daemon or None,
        "home_problem": doc.daemon.get("home_problem") if info else None,
    }
    lease = None
    if holder is not None:
        lease = {
            "host": holder.host,
            "pid": holder.pid,
            "epoch": holder.epoch,
            "heartbeat_age_s": round(holder.heartbeat_age_s or 0.0, 1),
            "same_host": holder.same_host,
            "pid_alive": holder.pid_alive,
        }
    runs = []
    for run in config.runs:
        record = doc.runs.get(run.name)
        stages = []
        for stage in run.stages:
            srec = record.stages.get(stage.name) if record else None
            state = srec.state if srec else StageStatus.PENDING
            duration = srec.duration_s if srec else None
            if srec and state is StageStatus.RUNNING and srec.started_at:
                duration = round(now - srec.started_at, 1)
            entry: dict[str, Any] = {
                "name": stage.name,
                "state": state.value,
                "duration_s": duration,
                "reason": srec.reason if srec else None,
                "restarts": srec.restarts if srec else 0,
                "last_exit": srec.last_exit if srec else None,
                "last_failure": srec.last_failure if srec else None,
                "last_lines": srec.last_lines if srec and state in (StageStatus.FAILED, StageStatus.FATAL) else [],
            }
            if srec and srec.items_total is not None:
                entry["items"] = {"done": srec.items_done, "total": srec.items_total, "eta_s": srec.items_eta_s}
            stages.append(entry)
        runs.append(
            {
                "name": run.name,
                "state": (record.state if record else RunStatus.PENDING).value,
                "reason": record.reason if record else None,
                "stages": stages,
                "training": _training(run, record.training if record else None, now),
            }
        )
    return {
        "daemon": daemon,
        "lease": lease,
        "home": str(config.home),
        "work": str(config.work),
        "state": {
            "source": str(loaded.source) if loaded.source else None,
            "written_at": doc.written_at or None,
            "generation": doc.generation,
            "epoch": doc.epoch,
            "problems": list(loaded.problems),
        },
        "runs": runs,
    }


_TRAINING_KEYS = (
    "update",
    "total_updates",
    "loss",
    "updates_per_s",
    "eta_s",
    "epoch",
    "durable_update",
    "durable_age_s",
    "durable_size",
    "durable_path",
    "restarts",
    "last_exit",
    "sync_warning",
    "sync_error",
    "superseded",
    "quarantined",
    "last_failure",
    "restored",
    "export",
)


def _training(run: RunConfig, training: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
    """The train stage's figures; the durable checkpoint is read from home when state knows none (fresh VM)."""
    stage = next((s for s in run.stages if s.kind == "train"), None)
    if stage is None:
        return None
    data = dict(training or {})
    if data.get("durable_update") is None:
        durable = newest_manifest(Path(stage.options["home_checkpoints"]))
        if durable is not None:
            data.update(
                durable_update=durable.get("update"),
                durable_synced_at=durable.get("synced_at"),
                durable_size=durable.get("size"),
                durable_path=durable.get("path"),
            )
    synced = data.get("durable_synced_at")
    data["durable_age_s"] = round(now - synced, 1) if isinstance(synced, (int, float)) else None
    data.setdefault("restarts", 0)
    return {key: data.get(key) for key in _TRAINING_KEYS}


def newest_manifest(home_ckpts: Path) -> dict[str, Any] | None:
    """The newest checkpoint manifest on home by (epoch, update), read as plain JSON (no sync machinery)."""
    best: tuple[tuple[int, int], dict[str, Any]] | None = None
    try:
        names = [p for p in home_ckpts.iterdir() if p.name.startswith("ckpt-") and p.suffix == ".json"]
    except OSError:
        return None
    for path in names:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            key = (int(data["epoch"]), int(data["update"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if best is None or key > best[0]:
            best = (key, {**data, "path": str(path.with_suffix(".pt"))})
    return best[1] if best else None


def exit_code(report: dict[str, Any]) -> int:
    """0 while a daemon runs here and no run is FATAL; 1 otherwise (scripts can `f5guard status || ...`)."""
    if not report["daemon"]["running"]:
        return 1
    return 1 if any(run["state"] == RunStatus.FATAL.value for run in report["runs"]) else 0
