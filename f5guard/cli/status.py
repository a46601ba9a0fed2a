"""``f5guard status``: where everything stands, from files only; works with no daemon running."""

from __future__ import annotations

import json

import click

from f5guard.cli.common import config_option, open_config
from f5guard.status.report import build_report, exit_code


@click.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(config_path: str | None, as_json: bool) -> int:
    """Where everything stands: daemon, runs, stages. Exit 1 when no daemon runs here or a run is FATAL."""
    ctx = open_config(config_path)
    report = build_report(ctx.config)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        from f5guard.status.render import make_console, render_status

        render_status(report, make_console())
    return exit_code(report)
