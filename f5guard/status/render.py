"""Human rendering of the status report (rich tables; the notebook shows the colours)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from f5guard.cloud import note as cloudnote
from f5guard.stages.textsafe import printable
from f5guard.state import SampleNote, precision_change, precision_name
from f5guard.status.report import StageReport, StatusReport, TrainingReport
from f5guard.status.units import human_bytes, human_duration
from f5guard.trainevents import SetupNote

STATE_STYLE = {
    "done": "green",
    "skipped": "dim green",
    "running": "bold cyan",
    "pending": "dim",
    "failed": "bold red",
    "fatal": "bold white on red",
    "interrupted": "yellow",
    "stopped": "yellow",
}


def make_console(columns: int | None = None, *, file: TextIO | None = None, color: bool | None = None) -> Console:
    """Notebook cells are no terminal: rich would assume 80 columns; a cell is wider and wraps by itself.

    ``columns``/``color`` describe the client's terminal when the daemon renders for it (the status fast path).
    """
    if columns is None:
        columns = shutil.get_terminal_size((0, 0)).columns or int(os.environ.get("COLUMNS", "0") or 0)
    return Console(
        file=file,
        highlight=False,
        width=max(columns or 120, 100),
        soft_wrap=False,
        force_terminal=color,
        no_color=None if color is None else not color,
    )


def _daemon_line(report: StatusReport) -> Text:
    d = report["daemon"]
    if d["running"] and d["phase"] == "frozen":
        return Text.assemble(
            ("● ", "bold yellow"),
            ("f5guard frozen", "bold"),
            f"  pid {d['pid']} · host {d['host']}: stopped by a signal (SIGSTOP), it does nothing until "
            f"`kill -CONT {d['pid']}` (`f5guard stop` continues it and stops it)",
        )
    if d["running"]:
        phase = "" if d["phase"] in (None, "ready") else f" ({d['phase']})"
        line = Text.assemble(
            ("● ", "bold green"),
            ("f5guard running", "bold"),
            phase,
            f"  pid {d['pid']} · host {d['host']} · up {human_duration(d['uptime_s'])}",
        )
        if d["epoch"] is not None:
            line.append(f" · epoch {d['epoch']}")
        if d["heartbeat_age_s"] is not None:
            line.append(f" · heartbeat {human_duration(d['heartbeat_age_s'])} ago")
        if d["idle_with_failures"]:
            line.append(" · idle: a run failed (`f5guard start` retries it)", style="bold red")
        return line
    line = Text.assemble(("○ ", "bold yellow"), ("no f5guard supervisor runs here", "bold"))
    known = d.get("last_known") or {}
    written = report["state"]["written_at"]
    if known:
        ago = human_duration(time.time() - written) if written else "?"
        line.append(f". Last known: pid {known.get('pid')} on host {known.get('host')}, state written {ago} ago")
    last = d["last_exit"]
    if last is not None:
        when = time.strftime("%H:%M:%S", time.localtime(last["at"]))
        verb = "died" if last["crashed"] else "ended"
        line.append(f"\n  the supervisor (pid {last['pid']}) {verb} at {when}: {last['reason']}",
                    style="bold red" if last["crashed"] else "")  # fmt: skip
    return line


def _training_detail(t: TrainingReport) -> str:
    parts: list[str] = []
    if t.get("update") is not None:
        total = f"/{t['total_updates']}" if t.get("total_updates") else ""
        parts.append(f"update {t['update']}{total}")
    if t.get("loss") is not None:
        parts.append(f"loss {t['loss']:.3f}")
    if t.get("updates_per_s"):
        parts.append(f"{t['updates_per_s']:.2f} upd/s")
    if t.get("eta_s") is not None:
        parts.append(f"ETA {human_duration(t['eta_s'])}")
    if (t.get("processes") or 1) > 1:
        parts.append(f"{t['processes']} processes")
    return " · ".join(parts)


def _warn(label: str, rest: str) -> Text:
    """A yellow label and literal text: paths and messages are never markup (a folder named "[red]x[/]", an
    error quoting "[/]" must neither break the view nor forge a line of it)."""
    return Text.assemble((label, "yellow"), rest)


def _training_lines(t: TrainingReport) -> list[Text]:
    lines: list[Text] = []
    cloud = t.get("cloud")
    if cloud and cloud["kind"] != "local" and (t.get("durable_update") is not None or cloud["lost"]):
        lines.extend(Text(line) for line in cloudnote.lines(cloud, time.time()))
    elif t.get("durable_update") is not None:
        lines.append(Text(
            f"checkpoint safe on home: update {t['durable_update']}, "
            f"{human_duration(t.get('durable_age_s'))} ago, {human_bytes(t.get('durable_size'))}"
            f" ({Path(str(t.get('durable_path'))).name})"
        ))  # fmt: skip
    else:
        lines.append(Text("no checkpoint on home yet"))
    if cloud and cloud["kind"] == "local":
        lines.extend(Text(line) for line in cloudnote.lines(cloud, time.time()))  # a checkpoint lost with a VM
    setup, override = t.get("setup"), t.get("batch_override")
    if setup:
        lines.append(Text(_setup_line(setup)))
    if override:
        lines.append(Text.assemble(
            (f"batch {override['from_batch']} -> {override['batch_size_per_gpu']} "
             f"{'frames' if override['batch_size_type'] == 'frame' else 'samples'} x grad_accum "
             f"{override['grad_accumulation_steps']}", "yellow"),
            f" after {override['reason']} (set by f5guard, same effective batch)",
        ))  # fmt: skip
    precision = t.get("precision_override")
    if precision:
        lines.append(_warn(precision_change(precision), " (set by f5guard, resumed from the last finite checkpoint)"))
    superseded, restored = t["superseded"], t["restored"]
    if superseded:
        lines.append(_warn("new vocab", f" ({superseded['old_vocab']} -> {superseded['vocab']} tokens): earlier "
                                        f"checkpoints kept in {superseded['moved_to']}"))  # fmt: skip
    if restored:
        lines.append(Text(f"restored from home at update {restored['update']}"))
    export = t["export"]
    if export and export["update"] is not None:
        lines.append(Text(
            f"inference copy on home (EMA, fp16): update {export['update']}, {human_bytes(export['size'])}"
            f" ({Path(str(export['path'])).name})"
        ))  # fmt: skip
    if export and export["error"]:
        lines.append(_warn("inference copy failed:", f" {export['error']}"))
    lines.extend(_sample_lines(t.get("sample")))
    for q in t["quarantined"]:
        lines.append(_warn("quarantined", f" {q['name']} → {q['moved_to']}: {q['reason']}"))
    if t["waiting"]:
        lines.append(_warn("not training yet:", f" {t['waiting']}"))
    for key in ("sync_warning", "sync_error"):
        if t.get(key):
            lines.append(_warn(f"{key.replace('_', ' ')}:", f" {t[key]}"))
    return lines


def _sample_lines(sample: SampleNote | None) -> list[Text]:
    """The newest audio sample (sample_every), the one being made, and a failure."""
    if not sample:
        return []
    lines: list[Text] = []
    if sample["update"] is not None:
        took = f", made in {human_duration(sample['seconds'])}" if sample["seconds"] is not None else ""
        lines.append(Text(f"newest audio sample: update {sample['update']}{took}: {sample['path']}"))
    if sample["running"] is not None:
        lines.append(Text(f"speaking a sample with update {sample['running']}…"))
    if sample["error"]:
        lines.append(_warn("audio sample failed:", f" {sample['error']}"))
    return lines


def _setup_line(setup: SetupNote) -> str:
    """e.g. "precision bf16 on NVIDIA A100 (auto) · batch 38400 frames (auto for 79.1 GiB) x grad_accum 1"."""
    chosen = "auto" if setup.precision_requested == "auto" else "set"
    unit = "frames" if setup.batch_size_type == "frame" else "samples"
    memory = f" for {setup.gpu_memory_gib:g} GiB" if setup.batch_auto and setup.gpu_memory_gib else ""
    batch = f"batch {setup.batch_size_per_gpu} {unit}{f' (auto{memory})' if setup.batch_auto else ''}"
    adam = " · 8-bit Adam" if setup.bnb_optimizer else ""
    precision = precision_name(setup.precision)
    return (
        f"precision {precision} on {setup.device} ({chosen}) · {batch} x grad_accum "
        f"{setup.grad_accumulation_steps}{adam}"
    )


def _detail(stage: StageReport) -> str:
    parts: list[str] = []
    if stage.get("items"):
        items = stage["items"]
        eta = (
            f", ETA {human_duration(items['eta_s'])}"
            if items.get("eta_s") is not None and stage["state"] == "running"
            else ""
        )
        parts.append(f"{items['done']}/{items['total']} items{eta}")
    if stage["restart_in_s"] is not None:
        last = stage.get("last_failure") or stage["last_exit"]
        return f"restarting in {stage['restart_in_s']:.0f} s (attempt {stage['restarts'] + 1}, last exit: {last})"
    if stage["reason"] and stage["state"] != "done":
        parts.append(stage["reason"])
    if stage.get("restarts"):
        parts.append(f"{stage['restarts']} restart(s), last: {stage.get('last_failure') or stage['last_exit']}")
    return " · ".join(parts)


def render_status(report: StatusReport, console: Console) -> None:
    """Every value from the report is printed as literal text (rich's Text), never parsed as markup."""
    console.print(_daemon_line(report), soft_wrap=True)
    console.print(Text(f"  home  {report['home']}\n  work  {report['work']}"))
    lease = report.get("lease")
    if lease and not report["daemon"]["running"]:
        console.print(Text(
            f"  home lease held by host {lease['host']} pid {lease['pid']}, heartbeat "
            f"{human_duration(lease['heartbeat_age_s'])} ago"
        ))  # fmt: skip
    live = [c for c in report["claims"] if c["live"]]
    if len(live) > 1:
        names = "; ".join(f"host {c['host']} pid {c['pid']} epoch {c['epoch']}" for c in live)
        console.print(
            Text.assemble("  ", _warn(f"{len(live)} runtimes claim this home:", f" {names} — the lower in (epoch, "
                                      "runtime) stops as soon as it sees the other (docs/reliability.md)")),
            soft_wrap=True,
        )  # fmt: skip
    if report["daemon"]["config_note"]:
        console.print(Text.assemble("  ", _warn("config:", f" {report['daemon']['config_note']}")), soft_wrap=True)
    if report["daemon"].get("home_problem"):
        problem = f" {report['daemon']['home_problem']} — training continues locally; home catches up when it answers"
        console.print(Text.assemble("  ", _warn("home problem:", problem)), soft_wrap=True)
    if report["daemon"].get("work_problem"):
        problem = f" {report['daemon']['work_problem']} — make room on the work disk; the daemon keeps running"
        console.print(Text.assemble("  ", ("work dir problem:", "bold red"), problem), soft_wrap=True)
    for problem in report["state"]["problems"]:
        console.print(Text.assemble("  ", _warn("warning:", f" {problem}")))
    for run in report["runs"]:
        console.print()
        title = Text.assemble(
            ("run ", "bold"), (run["name"], "bold"), " · ", (run["state"], STATE_STYLE.get(run["state"], ""))
        )
        if run["reason"] and run["state"] in ("failed", "fatal"):
            title.append(f" · {run['reason']}")
        console.print(title)
        table = Table(box=None, padding=(0, 2), show_edge=False, header_style="dim")
        for column in ("stage", "state", "time", "detail"):
            table.add_column(column)
        training = run.get("training")
        for stage in run["stages"]:
            detail = _detail(stage)
            if (
                training
                and stage["state"] == "running"
                and stage["restart_in_s"] is None
                and _training_detail(training)
            ):
                detail = _training_detail(training)
            table.add_row(
                Text(stage["name"]),
                Text(stage["state"], STATE_STYLE.get(stage["state"], "")),
                human_duration(stage["duration_s"]),
                Text(detail),
            )
        console.print(table)
        if training:
            for text in _training_lines(training):
                console.print(Text.assemble("  ", text), soft_wrap=True)
        for stage in run["stages"]:
            if stage["last_lines"]:
                console.print(Text(f"  last lines of {stage['name']}:", style="dim"))
                for line in stage["last_lines"]:  # printable(): a state written before logs were cleaned
                    console.print(Text(f"    {printable(line)}"), soft_wrap=True)
    if not report["daemon"]["running"]:
        lease = report.get("lease")
        if lease:  # a live claim of another runtime (or of another work dir on this machine)
            held = f"\n  Home is held by host {lease['host']} pid {lease['pid']}: `f5guard start` here is refused; "
            console.print(Text(held + "`f5guard start --takeover` takes it over (that supervisor stops)", style="dim"))
        else:
            console.print("\n  Start (or resume) it with: f5guard start", style="dim")
