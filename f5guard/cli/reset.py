"""``f5guard reset RUN [--stage S]``: make S (or the whole run) and every later stage run again: a reset request to
the daemon, or a file it applies when it starts (requests.py) when none answers."""

from __future__ import annotations

import time

import click

from f5guard import requests
from f5guard.cli.common import config_option, find_daemon
from f5guard.control.client import ask
from f5guard.control.protocol import Done, Refused, ResetRequest
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
    what = f"stage {stage!r} and every later stage" if stage else "every stage"
    info = handle.info
    if info is not None and info.pid > 0:
        answer = ask(handle.work.root, ResetRequest(run, stage), timeout_s=APPLY_WAIT_S)
        if isinstance(answer, Done):
            click.echo(answer.text)
            return 0
        if isinstance(answer, Refused):
            err = UsageError(answer.text)
            err.exit_code = answer.code
            raise err
    requests.submit(handle.work.requests, requests.ResetRequest(run=run, stage=stage, created_at=time.time()))
    if info is None or info.pid <= 0:
        click.echo(f"queued: {what} of run {run!r} will run again when the daemon starts (`f5guard start`).")
    else:
        click.echo(f"queued: the daemon (pid {info.pid}) did not answer now; it applies the reset within seconds.")
    return 0
