"""Stage kinds: each turns its TOML table into a StageConfig (``command`` is the generic one), and names the driver
that supervises its attempts (a plug-in: the daemon never names a kind).

The other kinds (``train``, the recipe stages) live in their rooms and build on StageBase; ``config.KINDS`` lists
them all. The daemon only ever sees StageConfig and the kind's driver.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from f5guard.schema import (
    RestartPolicy,
    Scope,
    StackPython,
    StageConfig,
    Table,
    check_argument,
    check_path,
    expand,
    path_kind,
)
from f5guard.stages.overlap import patterns_overlap

if TYPE_CHECKING:  # the driver machinery (psutil, threads) stays out of what reads a config (`status`)
    from f5guard.stages.driver import StageDriver


@dataclass(frozen=True)
class StageBase:
    """The keys every kind shares, already validated and expanded; a kind fills in the rest."""

    name: str
    env: Mapping[str, str]
    cwd: Path
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: Mapping[str, Any]
    scope: Scope
    long_running: bool
    restart: RestartPolicy
    stop_grace_s: float
    values: Mapping[str, str]  # placeholder values: {home}, {work}, {run}, {stage}, {config_dir}, {python}
    config_dir: Path
    made_before: tuple[str, ...] = ()  # the outputs of the run's earlier stages: there when this one starts
    python: StackPython | None = None  # the stack python ({python}); kinds running f5guard modules pass it on

    def resolve(self, template: str, where: str, file: Path) -> str:
        """Expand placeholders and anchor a relative path at the config file's folder."""
        text = expand(template, self.values, where, file)
        path = Path(os.path.expanduser(text))  # os.path's: an unknown ~user stays as written, no RuntimeError
        return check_path(str(path if path.is_absolute() else self.config_dir / path), where, file)

    def require(self, path: str, table: Table, key: str, what: str, *, folder: bool = False) -> None:
        """``path`` must be there when the stage starts: on disk now, home or work (f5guard makes them), or
        made by an earlier stage of the run (named by, or holding, one of its outputs)."""
        found = path_kind(path, table.key_path(key), table.file)
        if found is not None:
            if folder and found != "folder":
                table.fail(f"{path} is not a folder", key)
            return
        if path in (self.values["home"], self.values["work"]):
            return
        if any(patterns_overlap(path, out) for out in self.made_before):
            return
        table.fail(f"{what} {path} does not exist, and no earlier stage of this run makes it", key)

    def finish(self, kind: str, command: list[str], **changes: Any) -> StageConfig:
        stage = StageConfig(
            name=self.name,
            kind=kind,
            command=tuple(command),
            env=dict(self.env),
            cwd=self.cwd,
            inputs=self.inputs,
            outputs=self.outputs,
            params=dict(self.params),
            scope=self.scope,
            long_running=self.long_running,
            restart=self.restart,
            stop_grace_s=self.stop_grace_s,
        )
        return replace(stage, **changes) if changes else stage


KindBuilder = Callable[[Table, StageBase], StageConfig]


@dataclass(frozen=True)
class StageKind:
    """One entry of the table of stage kinds: how its TOML becomes a StageConfig, and its attempts' driver (a
    factory, so a kind's room is imported only when a stage of that kind runs)."""

    build: KindBuilder
    driver: Callable[[], StageDriver] | None = None  # None: the generic StageDriver


def build_command(table: Table, base: StageBase) -> StageConfig:
    """A generic stage: run an argv list; placeholders expand in every argument."""
    return base.finish("command", command_argv(table, base))


def command_argv(table: Table, base: StageBase) -> list[str]:
    """A stage's ``command``: a non-empty argv whose arguments, expanded, ``execve`` takes."""
    argv = table.str_list("command")
    if not argv or not argv[0].strip():
        table.fail("must name a program to run", "command")
    where = table.key_path("command")
    return [check_argument(expand(arg, base.values, where, table.file), where, table.file) for arg in argv]
