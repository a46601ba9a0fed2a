"""``f5guard init``: write a commented starter config; never overwrites one without --force."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import click

from f5guard.config import CONFIG_NAME, load_config
from f5guard.errors import UsageError


@click.command("init")
@click.option("--home", required=True, type=click.Path(file_okay=False), help="Persistent folder (Drive on Colab).")
@click.option("--work", default=None, type=click.Path(file_okay=False),
              help="Runtime-local folder (default: /content/f5guard on Colab, else ./f5guard-work).")
@click.option("--output", "-o", default=CONFIG_NAME, type=click.Path(dir_okay=False), help="Where to write it.")
@click.option("--force", is_flag=True, help="Overwrite an existing config.")
def command(home: str, work: str | None, output: str, force: bool) -> int:
    """Write a commented starter f5guard.toml."""
    target = Path(output)
    if target.exists() and not force:
        raise UsageError(f"{target} already exists; pass --force to overwrite it")
    home_path = Path(home).expanduser().resolve()
    if not home_path.exists() and not home_path.parent.is_dir():
        raise UsageError(f"neither {home_path} nor its parent exists (is Drive mounted?)")
    if work is None:
        work = "/content/f5guard" if Path("/content").is_dir() else str(Path("f5guard-work").resolve())
    text = files("f5guard").joinpath("templates/starter.toml").read_text(encoding="utf-8")
    text = text.replace("{HOME}", _toml_escape(str(home_path))).replace("{WORK}", _toml_escape(work))
    target.write_text(text, encoding="utf-8")
    load_config(target)  # what init writes must load; a failure here is a bug worth a loud error
    click.echo(f"wrote {target}; next: f5guard start --dry-run, then f5guard start")
    return 0


def _toml_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
