"""What several verbs share: loading the config and the two layouts."""

from __future__ import annotations

from dataclasses import dataclass

import click

from f5guard.config import find_config, load_config
from f5guard.layout import HomeLayout, WorkLayout
from f5guard.schema import Config

config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: $F5GUARD_CONFIG, then ./f5guard.toml).",
)


@dataclass(frozen=True)
class Context:
    config: Config
    work: WorkLayout
    home: HomeLayout


def open_config(config_path: str | None) -> Context:
    config = load_config(find_config(config_path))
    return Context(config=config, work=WorkLayout(config.work), home=HomeLayout(config.home))
