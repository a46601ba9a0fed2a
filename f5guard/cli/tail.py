"""``f5guard tail``: the daemon's events and the stages' output, merged by time; ``-f`` keeps following."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from f5guard.cli.common import config_option, find_daemon
from f5guard.cli.follow import Entry, Follower, Source, find_sources, iter_new, merged_tail
from f5guard.errors import UsageError
from f5guard.stages.textsafe import printable

POLL_S = 0.25
RESCAN_S = 2.0
_LEVEL_STYLE = {"error": "red", "warning": "yellow", "info": "cyan"}
_SKIP_KEYS = {"timestamp", "event", "level", "run", "stage", "logger"}


def _render(entry: Entry, as_json: bool) -> str:
    if as_json:
        return json.dumps(entry.as_json(), ensure_ascii=False)
    clock = entry.timestamp[11:19] if len(entry.timestamp) >= 19 else "        "
    # printable(): a stage's escape sequences must not act on the reader's terminal (logs written before
    # f5guard cleaned them, and the daemon's events that quote a stage's last lines)
    if entry.event is None:
        return printable(f"{clock} {entry.run}/{entry.stage} | {entry.text}")
    level = printable(str(entry.event.get("level", "info")))
    where = "/".join(str(x) for x in (entry.run, entry.stage) if x)
    extras = " ".join(f"{k}={_short(v)}" for k, v in entry.event.items() if k not in _SKIP_KEYS)
    head = click.style(f"{level.upper():7}", fg=_LEVEL_STYLE.get(level))
    rest = f" {entry.text}" + (f" [{where}]" if where else "") + (f"  {extras}" if extras else "")
    return f"{printable(clock)} {head}{printable(rest)}"


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."


@click.command("tail")
@config_option
@click.option("-n", "lines", type=click.IntRange(min=0), default=20, show_default=True, help="Lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep following (survives log rotation); Ctrl-C ends it.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--run", "run", default=None, help="Only this run.")
@click.option("--stage", "stage", default=None, help="Only this stage's output (and its daemon events).")
def command(
    config_path: str | None, lines: int, follow: bool, as_json: bool, run: str | None, stage: str | None
) -> int:
    """Show the daemon log and stage logs; interrupting `tail -f` never stops the daemon."""
    handle = find_daemon(config_path)
    config, work = handle.config, handle.work
    if handle.note:
        click.echo(f"note: {handle.note}", err=True)
    if config is not None and run is not None and config.run(run) is None:
        raise UsageError(f"no run named {run!r} in {config.path}")
    if (
        config is not None
        and stage is not None
        and not any(r.stage(stage) for r in config.runs if run is None or r.name == run)
    ):
        raise UsageError(f"no stage named {stage!r} in {config.path}")
    sources = find_sources(work, run, stage)
    for entry in merged_tail(sources, lines, run, stage):
        click.echo(_render(entry, as_json))
    if not follow:
        return 0
    followers: dict[Path, tuple[Source, Follower]] = {s.path: (s, Follower(s.path)) for s in sources}
    next_scan = time.monotonic() + RESCAN_S
    while True:
        for entry in iter_new(followers, run, stage):
            click.echo(_render(entry, as_json))
        if time.monotonic() >= next_scan:  # a stage that starts later gets its own log file
            next_scan = time.monotonic() + RESCAN_S
            for source in find_sources(work, run, stage):
                if source.path not in followers:
                    followers[source.path] = (source, Follower(source.path, from_end=False))
        time.sleep(POLL_S)
