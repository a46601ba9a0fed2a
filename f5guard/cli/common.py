"""What several verbs share: loading the config and the two layouts, and finding the daemon a config started."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from f5guard import pidfile
from f5guard.config import find_config, load_config
from f5guard.errors import ConfigError
from f5guard.layout import HomeLayout, WorkLayout
from f5guard.schema import Config
from f5guard.status.quick import noted_work_dir

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


def open_config(config_path: str | None, *, find_python: bool = True) -> Context:
    """``find_python=False`` for verbs that run no stage: they need not look for the stack python."""
    config = load_config(find_config(config_path), find_python=find_python)
    return Context(config=config, work=WorkLayout(config.work), home=HomeLayout(config.home))


@dataclass(frozen=True)
class DaemonHandle:
    """The daemon a config started: found even when the file no longer parses or now names another work dir
    (control never depends on today's config; the daemon runs with the one it started with)."""

    work: WorkLayout
    info: pidfile.DaemonInfo | None
    config: Config | None  # None: the file does not parse now
    note: str | None  # why the daemon was found through its own note rather than through the config


def find_daemon(config_path: str | None, *, find_python: bool = True) -> DaemonHandle:
    """Raises the config's ConfigError only when no daemon started from this config file runs."""
    path = find_config(config_path)
    try:
        ctx = open_config(config_path, find_python=find_python)
    except ConfigError as err:
        noted = _noted_daemon(path)
        if noted is None:
            raise
        return DaemonHandle(noted[0], noted[1], None, f"{err.message}; the running daemon (pid {noted[1].pid}) "
                            "still uses the config it started with")  # fmt: skip
    info = pidfile.running_daemon(ctx.work.lock, ctx.work.pidfile)
    if info is None and (noted := _noted_daemon(path)) is not None and noted[0].root != ctx.work.root:
        work, running = noted
        note = (f"{path} now names work {ctx.work.root}; the running daemon (pid {running.pid}) started with work "
                f"{work.root} and keeps it until it is stopped")  # fmt: skip
        return DaemonHandle(work, running, ctx.config, note)
    return DaemonHandle(ctx.work, info, ctx.config, None)


def _noted_daemon(path: Path) -> tuple[WorkLayout, pidfile.DaemonInfo] | None:
    noted = noted_work_dir(str(path.resolve()))
    if noted is None:
        return None
    work = WorkLayout(Path(noted[1]))
    info = pidfile.running_daemon(work.lock, work.pidfile)
    return (work, info) if info is not None and info.pid > 0 else None
