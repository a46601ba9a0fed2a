"""Stage kinds: each turns its TOML table into a StageConfig (``command`` is the generic one).

The other kinds (``train``, the recipe stages) live in their rooms and build on StageBase; ``config.KINDS`` lists
them all. The daemon only ever sees StageConfig.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from f5guard.schema import RestartPolicy, Scope, StageConfig, Table, expand


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

    def resolve(self, template: str, where: str, file: Path) -> str:
        """Expand placeholders and anchor a relative path at the config file's folder."""
        text = expand(template, self.values, where, file)
        path = Path(text).expanduser()
        return str(path if path.is_absolute() else self.config_dir / path)

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


def build_command(table: Table, base: StageBase) -> StageConfig:
    """A generic stage: run an argv list; placeholders expand in every argument."""
    argv = table.str_list("command")
    if not argv:
        table.fail("must name a program to run", "command")
    command = [expand(arg, base.values, table.key_path("command"), table.file) for arg in argv]
    return base.finish("command", command)
