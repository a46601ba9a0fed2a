"""``f5guard run --foreground``: the daemon loop attached to this terminal (systemd's ExecStart)."""

from __future__ import annotations

import click

from f5guard.cli.common import config_option
from f5guard.config import find_config


@click.command("run")
@config_option
@click.option("--foreground/--no-foreground", default=True, help="Stay attached (the only mode of `run`).")
@click.option("--takeover", is_flag=True, help="Take the home lease from another runtime.")
@click.option("--accept-older", is_flag=True, help="Resume from the newest checkpoint that arrived on home.")
def command(config_path: str | None, foreground: bool, takeover: bool, accept_older: bool) -> int:
    """Run the supervisor attached: logs on stderr, sd_notify when under systemd."""
    if not foreground:
        raise click.UsageError("`f5guard run` always runs attached; use `f5guard start` to detach")
    from f5guard.daemon.process import run_daemon

    return run_daemon(find_config(config_path).resolve(), takeover=takeover, foreground=True, accept_older=accept_older)
