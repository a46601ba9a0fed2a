"""Human rendering of the status report (rich tables; the notebook shows the colours)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from f5guard.stages.textsafe import printable
from f5guard.state import SampleNote, SetupNote
from f5guard.status.report import StageReport, StatusReport, TrainingReport

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


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


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


def human_bytes(size: float | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


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


def _training_lines(t: TrainingReport) -> list[str]:
    lines: list[str] = []
    if t.get("durable_update") is not None:
        lines.append(
            f"checkpoint safe on home: update {t['durable_update']}, "
            f"{human_duration(t.get('durable_age_s'))} ago, {human_bytes(t.get('durable_size'))}"
            f" ({Path(str(t.get('durable_path'))).name})"
        )
    else:
        lines.append("no checkpoint on home yet")
    setup, override = t.get("setup"), t.get("batch_override")
    if setup:
        lines.append(_setup_line(setup))
    if override:
        lines.append(
            f"[yellow]batch {override['from_batch']} -> {override['batch_size_per_gpu']} "
            f"{'frames' if override['batch_size_type'] == 'frame' else 'samples'} x grad_accum "
            f"{override['grad_accumulation_steps']}[/] after {override['reason']} "
            "(set by f5guard, same effective batch)"
        )
    superseded, restored = t["superseded"], t["restored"]
    if superseded:
        lines.append(
            f"[yellow]new vocab[/] ({superseded['old_vocab']} -> {superseded['vocab']} tokens): earlier checkpoints "
            f"kept in {superseded['moved_to']}"
        )
    if restored:
        lines.append(f"restored from home at update {restored['update']}")
    export = t["export"]
    if export and export["update"] is not None:
        lines.append(
            f"inference copy on home (EMA, fp16): update {export['update']}, {human_bytes(export['size'])}"
            f" ({Path(str(export['path'])).name})"
        )
    if export and export["error"]:
        lines.append(f"[yellow]inference copy failed:[/] {export['error']}")
    lines.extend(_sample_lines(t.get("sample")))
    for q in t["quarantined"]:
        lines.append(f"[yellow]quarantined[/] {q['name']} → {q['moved_to']}: {q['reason']}")
    if t["waiting"]:
        lines.append(f"[yellow]not training yet:[/] {t['waiting']}")
    for key in ("sync_warning", "sync_error"):
        if t.get(key):
            lines.append(f"[yellow]{key.replace('_', ' ')}:[/] {t[key]}")
    return lines


def _sample_lines(sample: SampleNote | None) -> list[str]:
    """The newest audio sample (sample_every), the one being made, and a failure."""
    if not sample:
        return []
    lines: list[str] = []
    if sample["update"] is not None:
        took = f", made in {human_duration(sample['seconds'])}" if sample["seconds"] is not None else ""
        lines.append(f"newest audio sample: update {sample['update']}{took}: {escape(str(sample['path']))}")
    if sample["running"] is not None:
        lines.append(f"speaking a sample with update {sample['running']}…")
    if sample["error"]:
        lines.append(f"[yellow]audio sample failed:[/] {escape(sample['error'])}")
    return lines


def _setup_line(setup: SetupNote) -> str:
    """e.g. "precision bf16 on NVIDIA A100 (auto) · batch 38400 frames (auto for 79.1 GiB) x grad_accum 1"."""
    chosen = "auto" if setup["precision_requested"] == "auto" else "set"
    unit = "frames" if setup["batch_size_type"] == "frame" else "samples"
    memory = f" for {setup['gpu_memory_gib']:g} GiB" if setup["batch_auto"] and setup["gpu_memory_gib"] else ""
    batch = f"batch {setup['batch_size_per_gpu']} {unit}{f' (auto{memory})' if setup['batch_auto'] else ''}"
    adam = " · 8-bit Adam" if setup["bnb_optimizer"] else ""
    precision = "fp32" if setup["precision"] == "no" else setup["precision"]  # accelerate's "no": no mixed precision
    return (
        f"precision {precision} on {setup['device']} ({chosen}) · {batch} x grad_accum "
        f"{setup['grad_accumulation_steps']}{adam}"
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
    console.print(_daemon_line(report), soft_wrap=True)
    console.print(f"  home  {report['home']}\n  work  {report['work']}", highlight=False)
    lease = report.get("lease")
    if lease and not report["daemon"]["running"]:
        console.print(
            f"  home lease held by host {lease['host']} pid {lease['pid']}, heartbeat "
            f"{human_duration(lease['heartbeat_age_s'])} ago",
            highlight=False,
        )
    live = [c for c in report["claims"] if c["live"]]
    if len(live) > 1:
        names = "; ".join(f"host {c['host']} pid {c['pid']} epoch {c['epoch']}" for c in live)
        console.print(
            f"  [yellow]{len(live)} runtimes claim this home:[/] {names} — the lower in (epoch, runtime) stops "
            "as soon as it sees the other (docs/reliability.md)",
            highlight=False,
            soft_wrap=True,
        )
    if report["daemon"]["config_note"]:
        console.print(f"  [yellow]config:[/] {report['daemon']['config_note']}", highlight=False, soft_wrap=True)
    if report["daemon"].get("home_problem"):
        console.print(
            f"  [yellow]home problem:[/] {report['daemon']['home_problem']} — training continues "
            "locally; home catches up when it answers",
            highlight=False,
            soft_wrap=True,
        )
    if report["daemon"].get("work_problem"):
        console.print(
            f"  [bold red]work dir problem:[/] {escape(str(report['daemon']['work_problem']))} — make room on the "
            "work disk; the daemon keeps running",
            highlight=False,
            soft_wrap=True,
        )
    for problem in report["state"]["problems"]:
        console.print(f"  [yellow]warning:[/] {problem}", highlight=False)
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
                stage["name"],
                Text(stage["state"], STATE_STYLE.get(stage["state"], "")),
                human_duration(stage["duration_s"]),
                detail,
            )
        console.print(table)
        if training:
            for line in _training_lines(training):
                console.print(f"  {line}", soft_wrap=True)
        for stage in run["stages"]:
            if stage["last_lines"]:
                console.print(f"  last lines of {stage['name']}:", style="dim")
                for line in stage["last_lines"]:  # printable(): a state written before logs were cleaned
                    console.print(f"    {printable(line)}", highlight=False, markup=False, soft_wrap=True)
    if not report["daemon"]["running"]:
        lease = report.get("lease")
        if lease:  # a live claim of another runtime (or of another work dir on this machine)
            held = f"\n  Home is held by host {lease['host']} pid {lease['pid']}: `f5guard start` here is refused; "
            console.print(held + "`f5guard start --takeover` takes it over (that supervisor stops)", style="dim")
        else:
            console.print("\n  Start (or resume) it with: f5guard start", style="dim")
