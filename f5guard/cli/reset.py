"""``f5guard reset RUN [--stage S]``: make S (or the whole run) and every later stage run again."""

from __future__ import annotations

import os
import signal
import time

import click

from f5guard import requests
from f5guard.cli.common import config_option, find_daemon
from f5guard.errors import UsageError

APPLY_WAIT_S = 10.0


@click.command("reset")
@config_option
@click.argument("run")
@click.option("--stage", "-s", default=None, help="First stage to invalidate (default: the whole run).")
def command(config_path: str | None, run: str, stage: str | None) -> int:
    """Invalidate a stage and everything after it; the daemon applies it (now, or at its next start)."""
    handle = find_daemon(config_path)
    if handle.note:
        click.echo(f"note: {handle.note}")
    if handle.config is not None:  # else the running daemon checks the names against the config it runs with
        run_config = handle.config.run(run)
        if run_config is None:
            known = ", ".join(r.name for r in handle.config.runs)
            raise UsageError(f"no run named {run!r} in {handle.config.path} (runs: {known})")
        if stage is not None and run_config.stage(stage) is None:
            known = ", ".join(s.name for s in run_config.stages)
            raise UsageError(f"run {run!r} has no stage {stage!r} (stages: {known})")
    path = requests.submit(handle.work.requests, requests.ResetRequest(run=run, stage=stage, created_at=time.time()))
    what = f"stage {stage!r} and every later stage" if stage else "every stage"
    info = handle.info
    if info is None or info.pid <= 0:
        click.echo(f"queued: {what} of run {run!r} will run again when the daemon starts (`f5guard start`).")
        return 0
    os.kill(info.pid, signal.SIGUSR1)
    deadline = time.monotonic() + APPLY_WAIT_S
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if path.exists():
        click.echo(f"queued: the daemon (pid {info.pid}) has not picked the request up yet; it will.")
    else:
        click.echo(f"reset: {what} of run {run!r} will run again.")
    return 0
