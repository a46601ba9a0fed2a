"""``f5guard run --foreground``: the daemon loop attached to this terminal (systemd's ExecStart); with
``--until-done``, a batch job (SkyPilot's ``run``) that exits once every run is final, its code saying how."""

from __future__ import annotations

import click

from f5guard.cli.common import config_option
from f5guard.config import find_config


@click.command("run")
@config_option
@click.option("--foreground/--no-foreground", default=True, help="Stay attached (the only mode of `run`).")
@click.option("--takeover", is_flag=True, help="Take the home lease from another runtime.")
@click.option("--accept-older", is_flag=True, help="Resume from the newest checkpoint that arrived on home.")
@click.option(
    "--until-done",
    is_flag=True,
    help="Exit once every run is final: 0 done, 1 failed, 2 config error, 3 home owned elsewhere, 4 FATAL, "
    "74 home unreachable, 75 stopped by a signal first, 70 crashed (docs/cloud.md).",
)
def command(config_path: str | None, foreground: bool, takeover: bool, accept_older: bool, until_done: bool) -> int:
    """Run the supervisor attached: logs on stderr, sd_notify when under systemd."""
    if not foreground:
        raise click.UsageError("`f5guard run` always runs attached; use `f5guard start` to detach")
    from f5guard.daemon import exitcodes
    from f5guard.daemon.process import run_daemon

    config = find_config(config_path).resolve()
    if not until_done:
        return run_daemon(config, takeover=takeover, foreground=True, accept_older=accept_older)
    try:
        return run_daemon(config, takeover=takeover, foreground=True, accept_older=accept_older, until_done=True)
    except Exception as err:  # noqa: BLE001 - the daemon logged the traceback; the job needs its code, not a 1
        click.echo(f"f5guard: the daemon crashed: {type(err).__name__}: {' '.join(str(err).split())}", err=True)
        return exitcodes.CRASHED
