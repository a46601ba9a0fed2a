"""``f5guard stop``: ask the daemon to stop (SIGTERM), wait for it to finish, report how it went."""

from __future__ import annotations

import math
import os
import signal
import time

import click

from f5guard import pidfile
from f5guard.cli.common import config_option, find_daemon
from f5guard.config import DEFAULT_STOP_GRACE_S
from f5guard.errors import DaemonError

EXTRA_WAIT_S = 30.0


def _finite(value: float | None) -> float | None:
    """FloatRange lets NaN through (every comparison with it is false) and inf means never: both are typos."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds", param_hint="'--timeout'")
    return value


TRAIN_FLUSH_S = 900.0  # as long as the daemon itself waits for the final sync (training.FLUSH_TIMEOUT_S)


@click.command("stop")
@config_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    callback=lambda _ctx, _param, value: _finite(value),
    help="Seconds to wait (default: the longest stage grace period + 30).",
)
def command(config_path: str | None, timeout: float | None) -> int:
    """Stop the supervisor: children get SIGTERM (a trainer checkpoints), then the lease is released."""
    handle = find_daemon(config_path)
    work, info = handle.work, handle.info
    if handle.note:
        click.echo(f"note: {handle.note}")
    if info is None:
        click.echo("no f5guard daemon runs here; nothing to stop.")
        return 0
    if info.pid <= 0:
        raise DaemonError(f"a daemon holds {work.lock} but its pidfile {work.pidfile} is unreadable")
    stages = [s for r in handle.config.runs for s in r.stages] if handle.config else []
    grace = max((s.stop_grace_s for s in stages), default=DEFAULT_STOP_GRACE_S)
    if handle.config is None or any(s.kind == "train" for s in stages):
        grace += TRAIN_FLUSH_S  # the last checkpoint is copied to home and verified before the daemon exits
    wait_s = timeout if timeout is not None else grace + EXTRA_WAIT_S
    started = time.monotonic()
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        click.echo("the daemon had already exited.")
        return 0
    if pidfile.frozen(info.pid):  # SIGSTOPped: the SIGTERM waits until it runs again
        click.echo(f"the daemon (pid {info.pid}) was stopped by a signal (SIGSTOP); continuing it so it can stop")
        os.kill(info.pid, signal.SIGCONT)
    click.echo(f"stopping f5guard (pid {info.pid}); a trainer checkpoints and its checkpoint is synced first...")
    # The lock goes first, then the process finishes exiting: wait for both, so nothing is left when we return.
    while pidfile.lock_is_held(work.lock) or pidfile.pid_alive(info.pid):
        if time.monotonic() - started > wait_s:
            raise DaemonError(
                f"the daemon (pid {info.pid}) is still stopping after {wait_s:.0f}s; "
                "see `f5guard tail` (run stop again to keep waiting)"
            )
        time.sleep(0.1)
    click.echo(f"stopped in {time.monotonic() - started:.1f}s.")
    return 0
