"""``f5guard stop``: ask the daemon to stop (SIGTERM), wait for it to finish, report how it went."""

from __future__ import annotations

import os
import signal
import time

import click

from f5guard import pidfile
from f5guard.cli.common import config_option, open_config
from f5guard.errors import DaemonError

EXTRA_WAIT_S = 30.0
TRAIN_FLUSH_S = 900.0  # as long as the daemon itself waits for the final sync (training.FLUSH_TIMEOUT_S)


@click.command("stop")
@config_option
@click.option(
    "--timeout", type=float, default=None, help="Seconds to wait (default: the longest stage grace period + 30)."
)
def command(config_path: str | None, timeout: float | None) -> int:
    """Stop the supervisor: children get SIGTERM (a trainer checkpoints), then the lease is released."""
    ctx = open_config(config_path)
    info = pidfile.running_daemon(ctx.work.lock, ctx.work.pidfile)
    if info is None:
        click.echo("no f5guard daemon runs here; nothing to stop.")
        return 0
    if info.pid <= 0:
        raise DaemonError(f"a daemon holds {ctx.work.lock} but its pidfile {ctx.work.pidfile} is unreadable")
    grace = max((s.stop_grace_s for r in ctx.config.runs for s in r.stages), default=0.0)
    if any(s.kind == "train" for r in ctx.config.runs for s in r.stages):
        grace += TRAIN_FLUSH_S  # the last checkpoint is copied to home and verified before the daemon exits
    wait_s = timeout if timeout is not None else grace + EXTRA_WAIT_S
    started = time.monotonic()
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        click.echo("the daemon had already exited.")
        return 0
    click.echo(f"stopping f5guard (pid {info.pid}); a trainer checkpoints and its checkpoint is synced first...")
    # The lock goes first, then the process finishes exiting: wait for both, so nothing is left when we return.
    while pidfile.lock_is_held(ctx.work.lock) or pidfile.pid_alive(info.pid):
        if time.monotonic() - started > wait_s:
            raise DaemonError(
                f"the daemon (pid {info.pid}) is still stopping after {wait_s:.0f}s; "
                "see `f5guard tail` (run stop again to keep waiting)"
            )
        time.sleep(0.1)
    click.echo(f"stopped in {time.monotonic() - started:.1f}s.")
    return 0
