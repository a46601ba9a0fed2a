"""The config model (frozen dataclasses) and the table reader that turns TOML into it with one-line errors.

Kept apart from ``config.py`` so that stage kinds can build on these types without an import circle.
"""

from __future__ import annotations

import difflib
import enum
import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

from f5guard.errors import ConfigError

T = TypeVar("T")


class Scope(str, enum.Enum):
    """How long a stage's outputs live: ``runtime`` redoes on a fresh machine, ``home`` persists."""

    RUNTIME = "runtime"
    HOME = "home"


@dataclass(frozen=True)
class RestartPolicy:
    """Restart rules for long-running stages; defaults beat PM2/systemd's loops (see ../shared/ANCHORS.md)."""

    backoff_initial_s: float = 1.0  # delay before the 2nd restart in a row; the 1st is immediate
    backoff_factor: float = 2.0
    backoff_max_s: float = 60.0
    stable_after_s: float = 300.0  # an attempt that lived this long resets the backoff
    budget: int = 10  # restarts allowed per window, then FATAL
    window_s: float = 3600.0


@dataclass(frozen=True)
class LeaseSettings:
    """Ownership of a home over Drive, which shows one VM's writes to another a minute or more later."""

    duration_s: float = 120.0
    heartbeat_s: float = 0.0  # 0 means duration / 3, SoftFileLease's own default
    takeover_slack_s: float = 30.0  # extra wait for a remote holder's writes to sync before forcing
    epoch_poll_s: float = 5.0
    settle_s: float = 60.0  # our claim stays on home this long, alone, before training starts
    arrival_timeout_s: float = 1800.0  # wait this long for a checkpoint that state says exists on home
    retention_delay_s: float = 600.0  # an older durable checkpoint goes only once its successor is this old

    @property
    def heartbeat_interval_s(self) -> float:
        return self.heartbeat_s or self.duration_s / 3


@dataclass(frozen=True)
class LogSettings:
    """Size-based rotation keeps a week-long run from filling the disk (a 30 GB pm2.log is the anti-goal)."""

    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5
    mirror_interval_s: float = 60.0


class KindOptions:
    """Settings only one stage kind reads (``training.kind.TrainOptions``); its driver narrows the type."""

    def fingerprint(self) -> Mapping[str, object]:
        """What of these settings a result depends on, as JSON (stages/fingerprint.py digests it)."""
        raise NotImplementedError


@dataclass(frozen=True)
class StageConfig:
    """One step of a run: what to execute, what it reads and makes, and how long its outputs live."""

    name: str
    kind: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: Mapping[str, Any]
    scope: Scope
    long_running: bool
    restart: RestartPolicy
    stop_grace_s: float
    options: KindOptions | None = None  # kind-specific settings, validated by the kind
    identity: Mapping[str, Any] | None = None  # what the result depends on, when not the command and options
    self_tied: bool = False  # the child sets its own parent-death signal: restarts skip a full fork


@dataclass(frozen=True)
class RunConfig:
    """One training target (a speaker / dataset) with its ordered stages."""

    name: str
    stages: tuple[StageConfig, ...]

    def stage(self, name: str) -> StageConfig | None:
        return next((s for s in self.stages if s.name == name), None)


@dataclass(frozen=True)
class Config:
    """The whole validated ``f5guard.toml``."""

    path: Path
    home: Path
    work: Path
    lease: LeaseSettings
    logs: LogSettings
    runs: tuple[RunConfig, ...]

    def run(self, name: str) -> RunConfig | None:
        return next((r for r in self.runs if r.name == name), None)


_REQUIRED: Final = object()
_TYPE_NAMES: Final = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


class Table:
    """Reads one TOML table, tracking which keys were used so that leftovers become 'unknown key' errors."""

    def __init__(self, data: Any, where: str, file: Path) -> None:
        self.file = file
        self.where = where
        if not isinstance(data, dict):
            self.fail(f"expected a table, got {describe(data)}")
        self.data: dict[str, Any] = data
        self._seen: set[str] = set()

    def key_path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, message: str, key: str | None = None) -> NoReturn:
        where = self.key_path(key) if key else (self.where or "top level")
        raise ConfigError(f"{self.file}: {where}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, kind: type[T], default: Any = _REQUIRED) -> T:
        """Return ``key`` checked against ``kind``; ``int`` is accepted where a float is asked."""
        self._seen.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                self.fail("is required", key)
            return default  # type: ignore[no-any-return]
        value = self.data[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            self.fail(f"expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {describe(value)}", key)
        return value  # type: ignore[no-any-return]

    def number(self, key: str, default: float, *, minimum: float = 0.0, positive: bool = False) -> float:
        value = self.get(key, float, default)
        if value < minimum or (positive and value <= 0):
            self.fail(f"must be {'positive' if positive else f'at least {minimum:g}'}, got {value:g}", key)
        return value

    def str_list(self, key: str, default: Any = _REQUIRED) -> list[str]:
        value = self.get(key, list, default)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"item {i} must be a string, got {describe(item)}", key)
        return list(value)

    def str_map(self, key: str) -> dict[str, str]:
        value = self.get(key, dict, {})
        for k, v in value.items():
            if not isinstance(v, str):
                self.fail(f"value of {k!r} must be a string, got {describe(v)}", key)
        return dict(value)

    def sub(self, key: str) -> Table:
        self._seen.add(key)
        return Table(self.data.get(key, {}), self.key_path(key), self.file)

    def done(self) -> None:
        """Reject keys nobody read: a typo must not silently fall back to a default."""
        for key in self.data:
            if key not in self._seen:
                close = difflib.get_close_matches(key, sorted(self._seen), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(f"unknown key {key!r}{hint}")


def describe(value: Any) -> str:
    """Name a TOML value's type the way a user wrote it."""
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return f"{name} ({value!r})" if kind in (str, int, float, bool) else name
    return type(value).__name__


def expand(template: str, values: Mapping[str, str], where: str, file: Path) -> str:
    """Fill ``{home}``-style placeholders; an unknown one is a config error, ``{{`` is a literal brace."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise ConfigError(f"{file}: {where}: bad placeholder in {template!r}: {err}") from err
    for name in fields:
        if name not in values:
            known = ", ".join("{" + k + "}" for k in sorted(values))
            raise ConfigError(f"{file}: {where}: unknown placeholder {{{name}}} in {template!r} (known: {known})")
    return template.format_map(values)


def placeholder_values(config_dir: Path, home: Path, work: Path, run: str = "", stage: str = "") -> dict[str, str]:
    return {
        "home": str(home),
        "work": str(work),
        "run": run,
        "stage": stage,
        "config_dir": str(config_dir),
        "python": sys.executable,
    }
