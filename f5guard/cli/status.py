"""``f5guard status``: where everything stands, from files only; works with no daemon running."""

from __future__ import annotations

import click

from f5guard.cli.common import config_option, find_daemon
from f5guard.errors import DaemonError, F5guardError
from f5guard.status.quick import ask_daemon
from f5guard.status.report import build_report, exit_code, to_json


@click.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(config_path: str | None, as_json: bool) -> int:
    """Where everything stands: daemon, runs, stages. Exit 1 when no daemon runs here or a run is FATAL."""
    try:
        handle = find_daemon(config_path, find_python=False)  # status runs no stage: instant without a daemon too
    except F5guardError as err:
        if as_json:  # a script reading stdout gets JSON too; the line on stderr and the exit code stay
            import json

            click.echo(json.dumps({"error": err.message, "exit_code": err.exit_code}, ensure_ascii=False))
        raise
    if handle.note is not None and handle.info is not None:
        # The config changed under the running daemon: it answers with the config it runs with.
        answer = ask_daemon(str(handle.work.root), as_json)
        if answer is not None:
            click.echo(answer[1], nl=False)
            click.secho(f"note: {handle.note}", fg="yellow", err=as_json)
            return answer[0]
    if handle.config is None:
        raise DaemonError(f"{handle.note}; but that daemon did not answer (see `f5guard tail`)")
    report = build_report(handle.config)
    if as_json:
        click.echo(to_json(report), nl=False)
    else:
        from f5guard.status.render import make_console, render_status

        render_status(report, make_console())
    return exit_code(report)
