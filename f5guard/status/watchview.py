"""What ``f5guard watch`` shows, drawn from the status report: per run its stage, a bar for the running stage
(items for recipe stages, updates for training), the newest checkpoint on home, restarts and the newest
warning; the events between two reports; and when the watch is over.

Pure and rich-free: the terminal view (rich) and the notebook views (plain lines) are drawn from the same
:class:`RunView`, and a notebook cell pays for no rich import.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from f5guard.cloud.note import lines as cloud_lines
from f5guard.state import precision_change
from f5guard.status.report import RunReport, StageReport, StatusReport, TrainingReport
from f5guard.status.units import human_bytes, human_duration

BAR_WIDTH = 20
_DONE, _FAILED, _STOPPED = ("done",), ("failed", "fatal"), ("stopped",)


@dataclass(frozen=True)
class Bar:
    """The running stage's progress; ``total`` None: no bar, only the figures (a total not known yet)."""

    stage: str
    done: int | None
    total: int | None
    figures: str  # "update 420/2000 · loss 0.512 · 2.10 upd/s · ETA 12m32s"

    @property
    def fraction(self) -> float | None:
        if self.done is None or not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))


@dataclass(frozen=True)
class RunView:
    name: str
    state: str  # the run's state (pending, running, done, failed, fatal, stopped, interrupted)
    where: str  # "stage 7/7 train", "done", "failed: stage 'x' failed: ..."
    bar: Bar | None
    checkpoint: str | None
    restarts: str | None
    warning: str | None  # the newest warning the report carries for this run (or the daemon/home)


@dataclass(frozen=True)
class Outcome:
    """The watch is over: exit ``code`` with ``message`` (one line)."""

    code: int
    message: str


def text_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``|█████░░░░░|  50%``: plain characters every notebook renders."""
    full = round(fraction * width)
    return f"|{'█' * full}{'░' * (width - full)}| {fraction * 100:3.0f}%"


def watched(report: StatusReport, names: Sequence[str] | None) -> list[RunReport]:
    return [r for r in report["runs"] if names is None or r["name"] in names]


def _training_stage(run: RunReport) -> str | None:
    """The run's train stage: the report names it (``stage``); a daemon of an older f5guard does not."""
    training = run.get("training")
    if not training:
        return None
    named = training.get("stage")
    if isinstance(named, str):
        return named
    return next((s["name"] for s in run["stages"] if s["state"] == "running" and not s.get("items")), None)


def _training_figures(t: TrainingReport) -> str:
    parts: list[str] = []
    if t.get("update") is not None:
        parts.append(f"update {t['update']}" + (f"/{t['total_updates']}" if t.get("total_updates") else ""))
    if t.get("loss") is not None:
        parts.append(f"loss {t['loss']:.3f}")
    if t.get("updates_per_s"):
        parts.append(f"{t['updates_per_s']:.2f} upd/s")
    if t.get("eta_s") is not None:
        parts.append(f"ETA {human_duration(t['eta_s'])}")
    if not parts:
        parts.append(f"not training yet: {t['waiting']}" if t.get("waiting") else "starting")
    return " · ".join(parts)


def _bar(run: RunReport, stage: StageReport) -> Bar:
    if stage["restart_in_s"] is not None:
        last = stage.get("last_failure") or stage["last_exit"]
        why = f"restarting in {stage['restart_in_s']:.0f} s (attempt {stage['restarts'] + 1}, last exit: {last})"
        return Bar(stage["name"], None, None, why)
    training = run.get("training")
    if training and stage["name"] == _training_stage(run):
        return Bar(stage["name"], training.get("update"), training.get("total_updates"), _training_figures(training))
    items = stage.get("items")
    if items:
        eta = f" · ETA {human_duration(items['eta_s'])}" if items.get("eta_s") is not None else ""
        return Bar(stage["name"], items["done"], items["total"], f"{items['done'] or 0}/{items['total']} items{eta}")
    return Bar(stage["name"], None, None, f"running for {human_duration(stage['duration_s'])}")


def _checkpoint(t: TrainingReport | None) -> str | None:
    if not t:
        return None
    if t.get("durable_update") is None:
        return "no checkpoint on home yet" if t.get("update") else None
    text = (f"checkpoint update {t['durable_update']} on home, {human_duration(t.get('durable_age_s'))} ago "
            f"({human_bytes(t.get('durable_size'))})")  # fmt: skip
    cloud = _cloud(t.get("cloud"))
    return f"{text} · {cloud}" if cloud else text


def _cloud(note: Any) -> str | None:
    """What reached the cloud and what still uploads (cloud/note.py's words); nothing on a plain disk."""
    if not isinstance(note, dict) or "kind" not in note:
        return None
    try:
        return " · ".join(cloud_lines(note, time.time())) or None  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return None  # a report from another version: the checkpoint line still stands


def _restarts(stage: StageReport | None) -> str | None:
    """The stage's restarts (the train stage's too: restarts and exits live in the stage's record)."""
    if stage is None or not stage["restarts"]:
        return None
    count, last = stage["restarts"], stage.get("last_failure") or stage["last_exit"]
    return f"{count} restart{'s' if count != 1 else ''}" + (f" (last: {last})" if last else "")


def warnings(report: StatusReport, run: RunReport) -> list[str]:
    """Every warning the report carries for this run, the most pressing first."""
    found: list[str] = []
    daemon = report["daemon"]
    if daemon.get("home_problem"):
        found.append(f"home problem: {daemon['home_problem']}")
    training = run.get("training")
    if training:
        change = training.get("precision_override")
        if change:
            found.append(precision_change(change))
        for key in ("sync_error", "sync_warning"):
            if training.get(key):
                found.append(f"{key.replace('_', ' ')}: {training[key]}")
        if training["quarantined"]:
            q = training["quarantined"][-1]
            found.append(f"quarantined {q['name']}: {q['reason']}")
        for what, note in (("inference copy", training.get("export")), ("audio sample", training.get("sample"))):
            if note and note.get("error"):
                found.append(f"{what} failed: {note['error']}")
    live = [c for c in report["claims"] if c["live"]]
    if len(live) > 1:
        found.append(f"{len(live)} runtimes claim this home (the lower in epoch stops)")
    if daemon.get("config_note"):
        found.append(f"config: {daemon['config_note']}")
    found.extend(f"state: {p}" for p in report["state"]["problems"])
    return found


def run_view(report: StatusReport, run: RunReport) -> RunView:
    stages = run["stages"]
    running = next((s for s in stages if s["state"] == "running"), None)
    if running is not None:
        where = f"stage {stages.index(running) + 1}/{len(stages)} {running['name']}"
    elif run["state"] in _FAILED + _STOPPED and run["reason"]:
        where = f"{run['state']}: {run['reason']}"
    else:
        where = run["state"]
    found = warnings(report, run)
    return RunView(
        name=run["name"],
        state=run["state"],
        where=where,
        bar=_bar(run, running) if running is not None else None,
        checkpoint=_checkpoint(run.get("training")),
        restarts=_restarts(running),
        warning=found[0] if found else None,
    )


def line(view: RunView, *, warning: bool = True) -> str:
    """One line per run, for a notebook cell (redrawn, or printed every N seconds)."""
    parts = [f"{view.name}: {view.where}"]
    if view.bar is not None:
        fraction = view.bar.fraction
        parts.append((f"{text_bar(fraction)} " if fraction is not None else "") + view.bar.figures)
    parts.extend(x for x in (view.checkpoint, view.restarts) if x)
    if warning and view.warning:
        parts.append(f"warning: {view.warning}")
    return " · ".join(parts)


def clock(now: float | None = None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(now))


def events(before: StatusReport | None, after: StatusReport, names: Sequence[str] | None) -> list[str]:
    """What changed between two reports, one line each: stages started and ended, restarts, new checkpoints
    on home, new warnings, runs done. The first report has no events (the view shows where things stand)."""
    if before is None:
        return []
    old = {r["name"]: r for r in watched(before, names)}
    lines: list[str] = []
    for run in watched(after, names):
        prev = old.get(run["name"])
        if prev is None:
            continue
        name = run["name"]
        prev_stages = {s["name"]: s for s in prev["stages"]}
        for stage in run["stages"]:
            was = prev_stages.get(stage["name"])
            if was is None:
                continue
            label = f"{name}/{stage['name']}"
            if stage["state"] != was["state"]:
                text = {
                    "running": f"{label} started",
                    "done": f"{label} done in {human_duration(stage['duration_s'])}",
                    "skipped": f"{label} skipped ({stage['reason']})",
                    "failed": f"{label} failed: {stage['reason']}",
                    "fatal": f"{label} FATAL: {stage['reason']}",
                }.get(stage["state"])
                if text:
                    lines.append(text)
            if stage["restarts"] > was["restarts"]:
                lines.append(
                    f"{label} restarted ({stage['restarts']}): {stage.get('last_failure') or stage['last_exit']}"
                )
        t, t0 = run.get("training"), prev.get("training")
        if t and t["durable_update"] is not None and t["durable_update"] != (t0["durable_update"] if t0 else None):
            lines.append(
                f"{name}: checkpoint update {t['durable_update']} on home ({human_bytes(t.get('durable_size'))})"
            )
        for warning in warnings(after, run):
            if warning not in warnings(before, prev):
                lines.append(f"{name}: warning: {warning}")
        if run["state"] != prev["state"] and run["state"] == "done":
            lines.append(f"run {name} done")
    return lines


def outcome(report: StatusReport, names: Sequence[str] | None) -> Outcome | None:
    """None while the watch goes on; exit 0 once every watched run is done, 1 once one failed, stopped, or
    the supervisor ended before it was done."""
    runs = watched(report, names)
    for run in runs:
        if run["state"] in _FAILED:
            return Outcome(1, f"run {run['name']} {run['state']}: {run['reason']}")
    if runs and all(r["state"] in _DONE for r in runs):
        return Outcome(0, f"{'every run' if len(runs) > 1 else 'run ' + runs[0]['name']} done")
    for run in runs:
        if run["state"] in _STOPPED:
            return Outcome(1, f"run {run['name']} stopped: {run['reason']}")
    daemon = report["daemon"]
    if not daemon["running"]:
        unfinished = ", ".join(r["name"] for r in runs if r["state"] not in _DONE)
        last = daemon.get("last_exit")
        why = f": {last['reason']}" if last else ""
        return Outcome(1, f"the supervisor ended before run {unfinished} was done{why}")
    return None
