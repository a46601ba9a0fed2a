"""The config model (frozen dataclasses) and the table reader that turns TOML into it with one-line errors.

Kept apart from ``config.py`` so that stage kinds can build on these types without an import circle.
"""

from __future__ import annotations

import difflib
import enum
import math
import os
import stat
import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, TypeVar

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


StoreKind = Literal["auto", "local", "drive", "writeback", "bucket"]
STORE_KINDS: Final = ("auto", "local", "drive", "writeback", "bucket")
# Where home is a bucket depends on the machine, not on the config (the same config runs on Colab's Drive): the
# SkyPilot task of `f5guard cloud` sets these; a key in [store] wins over them.
STORE_ENV: Final = {"bucket": "F5GUARD_STORE_BUCKET", "mount": "F5GUARD_STORE_MOUNT",
                    "endpoint": "F5GUARD_STORE_ENDPOINT"}  # fmt: skip


@dataclass(frozen=True)
class StoreSettings:
    """What home is: a checkpoint is *in the cloud* only on the store's evidence (f5guard/cloud/, the
    ``[store]`` table). "auto" picks drive (DriveFS's attributes answer), writeback (a FUSE or network mount
    without them: an estimate) or local (a plain disk, which is the store itself)."""

    kind: StoreKind = "auto"  # "bucket" (or "auto" with a bucket): evidence from the bucket's SDK (cloud/bucket.py)
    bucket: str = ""  # gs://NAME[/PREFIX], s3://..., r2://...: the bucket mounted at ``mount``
    mount: str = ""  # the folder where the bucket (its prefix) is mounted; "" = home
    endpoint: str = ""  # an S3-compatible endpoint URL (R2, MinIO); "" = the SDK's own
    upload_mb_per_s: float = 2.0  # writeback's estimate (and drive's before one upload was measured); 1 MB = 1e6 B
    poll_s: float = 5.0  # how often the upload state of this VM's checkpoints is read (one getxattr per file)

    @property
    def upload_bytes_per_s(self) -> float:
        return self.upload_mb_per_s * 1e6


@dataclass(frozen=True)
class LogSettings:
    """Size-based rotation keeps a week-long run from filling the disk (a 30 GB pm2.log is the anti-goal)."""

    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5
    mirror_interval_s: float = 60.0


@dataclass(frozen=True)
class StackPython:
    """The interpreter the training stack runs in (``python`` in f5guard.toml; stages/stackpython.py)."""

    path: str
    how: str = field(compare=False)  # why: "set in the config", or which rule of "auto" (may change, path not)
    pythonpath: str | None = None  # a folder holding only a link to f5guard; None: the daemon's own Python


class KindOptions:
    """Settings only one stage kind reads (``training.kind.TrainOptions``); its driver narrows the type."""

    def fingerprint(self) -> Mapping[str, object]:
        """What of these settings a result depends on, as JSON (stages/fingerprint.py digests it)."""
        raise NotImplementedError

    def home_copies(self) -> tuple[tuple[str, str], ...]:
        """Append-only files of the stage that the daemon copies to home as they grow: (local file, home folder)."""
        return ()


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
    python: StackPython | None = None  # runs f5guard code in the stack python: its PYTHONPATH shows f5guard


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
    python: StackPython = StackPython(sys.executable, "the daemon's own Python")
    store: StoreSettings = StoreSettings()

    def run(self, name: str) -> RunConfig | None:
        return next((r for r in self.runs if r.name == name), None)


_REQUIRED: Final = object()
# Bounds every number and string meets unless its key says otherwise: beyond them a value is a typo, and Python's
# timers overflow (time.sleep(1e300)), so it must fail here, naming the key, not in the daemon an hour later.
MAX_SECONDS: Final = 365 * 24 * 3600.0  # a year: any duration longer than that is a typo for a shorter one
MAX_INT: Final = 2**31 - 1  # counts and sizes reach C code (torch, the DataLoader) as 32-bit integers
NAME_MAX: Final = 255  # bytes in one path component (Linux, Drive's FUSE mount)
PATH_MAX: Final = 4095  # bytes in a whole path, without its terminating NUL
ARG_MAX: Final = 131071  # bytes in one argument or environment entry (Linux's MAX_ARG_STRLEN, less the NUL)
SHOWN: Final = 60  # characters of a user's value quoted in a message
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
            if abs(value) > sys.float_info.max:  # float() would raise OverflowError
                self.fail(f"is too large for a number: {show_number(value)}", key)
            value, ok = float(value), True
        if not ok:
            self.fail(f"expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {describe(value)}", key)
        return value  # type: ignore[no-any-return]

    def number(
        self, key: str, default: float, *, minimum: float = 0.0, positive: bool = False, maximum: float = MAX_SECONDS
    ) -> float:
        """A finite float in [minimum, maximum] (> 0 when ``positive``); the default bound is a year of seconds."""
        value = self.get(key, float, default)
        if not math.isfinite(value):
            self.fail(f"must be a finite number, got {value!r}", key)
        if value < minimum or (positive and value <= 0):
            self.fail(f"must be {'positive' if positive else f'at least {minimum:g}'}, got {value:g}", key)
        if value > maximum:
            self.fail(f"must be at most {show_number(maximum)}{_unit(maximum)}, got {value:g}", key)
        return value

    def integer(self, key: str, default: int, *, minimum: int = 0, maximum: int = MAX_INT) -> int:
        """An integer in [minimum, maximum]."""
        value = self.get(key, int, default)
        if value < minimum:
            self.fail(f"must be at least {minimum}, got {show_number(value)}", key)
        if value > maximum:
            self.fail(f"must be at most {maximum}, got {show_number(value)}", key)
        return value

    def text(self, key: str, default: Any = _REQUIRED) -> str:
        """A string that is not empty or blank: a name, a path, a language code."""
        value = self.get(key, str, default)
        if not value.strip():
            self.fail("must not be empty" if value == "" else "must not be blank", key)
        return value

    def str_list(self, key: str, default: Any = _REQUIRED) -> list[str]:
        """A list of strings (argv, globs); each item is checked where its meaning is known."""
        value = self.get(key, list, default)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"item {i} must be a string, got {describe(item)}", key)
        return list(value)

    def str_map(self, key: str) -> dict[str, str]:
        """A table of strings: an environment, whose names ``execve`` takes only non-empty and without '='."""
        value = self.get(key, dict, {})
        for k, v in value.items():
            if not k or "=" in k:
                self.fail(f"variable name {shorten(k)!r} must be non-empty and contain no '='", key)
            if not isinstance(v, str):
                self.fail(f"value of {shorten(k)!r} must be a string, got {describe(v)}", key)
        return dict(value)

    def sub(self, key: str) -> Table:
        self._seen.add(key)
        return Table(self.data.get(key, {}), self.key_path(key), self.file)

    def done(self) -> None:
        """Reject keys nobody read: a typo must not silently fall back to a default."""
        for key in self.data:
            if key not in self._seen:
                close = difflib.get_close_matches(key, sorted(self._seen), n=1) if len(key) <= SHOWN else []
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(f"unknown key {shorten(key)!r}{hint}")


def describe(value: Any) -> str:
    """Name a TOML value's type the way a user wrote it."""
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            if isinstance(value, str):
                return f"{name} ({shorten(value)!r})"
            return f"{name} ({show_number(value)})" if isinstance(value, (int, float)) else name
    return type(value).__name__


def show_number(value: float) -> str:
    """A number as a message shows it; an integer of thousands of digits (which str() refuses) by its size."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return f"{'-' if value < 0 else ''}about 1e{math.floor(math.log10(abs(value)))}"
    if isinstance(value, float) and value.is_integer() and abs(value) < 10**15:
        return f"{value:.0f}"  # 31536000, not 3.1536e+07
    return repr(value) if isinstance(value, (int, bool)) else f"{value:g}"


def shorten(text: str) -> str:
    """At most SHOWN characters of a user's value, so a 1 MB string makes a readable message."""
    return text if len(text) <= SHOWN else f"{text[: SHOWN - 3]}..."


def _unit(maximum: float) -> str:
    return " (a year)" if maximum == MAX_SECONDS else ""


def expand(template: str, values: Mapping[str, str], where: str, file: Path) -> str:
    """Fill ``{home}``-style placeholders; an unknown one is a config error, ``{{`` is a literal brace.

    Only plain ``{name}``: a format spec or conversion (``{home:d}``, ``{home!r}``) means nothing for a path and
    would reach str.format, which raises on most of them (or pads a string to 10**20 characters).
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ConfigError(f"{file}: {where}: bad placeholder in {shorten(template)!r}: {err}") from err
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        field = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if spec or conversion:
            raise ConfigError(
                f"{file}: {where}: placeholder {shorten(field)!r} in {shorten(template)!r}: placeholders are plain "
                "{name}, without a format spec or conversion (write {{ and }} for literal braces)"
            )
        if name not in values:
            known = ", ".join("{" + k + "}" for k in sorted(values))
            raise ConfigError(
                f"{file}: {where}: unknown placeholder {shorten(field)} in {shorten(template)!r} (known: {known})"
            )
    return template.format_map(values)


def check_path(text: str, where: str, file: Path) -> str:
    """``text`` if the system can name a file by it: encodable, no NUL, components and the whole within limits."""
    problem = path_problem(text)
    if problem:
        raise ConfigError(f"{file}: {where}: {problem}")
    return text


def path_problem(text: str, *, utf8: bool = False) -> str | None:
    """Why no file can be named ``text`` (a phrase naming it), or None. ``utf8``: the path is to be written into
    a UTF-8 file (``f5guard init``), so a name that is not UTF-8 (``bad\\xff``, a surrogate here) is refused too."""
    if "\0" in text:
        return f"{shorten(text)!r} contains a NUL byte, which no path can hold"
    try:
        raw = text.encode("utf-8") if utf8 else os.fsencode(text)
    except UnicodeEncodeError:
        return f"{shorten(escaped(text))} is not valid UTF-8 text"
    for part in raw.split(b"/"):
        if len(part) > NAME_MAX:
            shown = shorten(part.decode("utf-8", "backslashreplace"))
            return f"the path component {shown!r} is {len(part)} bytes; a file name is at most {NAME_MAX} bytes"
    if len(raw) > PATH_MAX:
        return f"the path is {len(raw)} bytes; a path is at most {PATH_MAX} bytes"
    return None


def escaped(text: str) -> str:
    """A file name as the bytes it is, non-UTF-8 ones escaped (``bad\\xff``): printable, and what ls shows."""
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file system name decodes to: escape it as a code point
        return text.encode("utf-8", "backslashreplace").decode("ascii")


def path_kind(path: str | os.PathLike[str], where: str, file: Path) -> Literal["folder", "file"] | None:
    """What is at ``path`` (None: nothing); a failure to look (a loop, no permission) names the key."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise ConfigError(f"{file}: {where}: cannot look at {path}: {err.strerror or err}") from None
    return "folder" if stat.S_ISDIR(mode) else "file"


def check_argument(text: str, where: str, file: Path) -> str:
    """``text`` if ``execve`` takes it as one argument: Linux refuses a longer one with E2BIG at start."""
    size = len(text.encode("utf-8", "surrogateescape"))
    if size > ARG_MAX:
        raise ConfigError(f"{file}: {where}: an argument of {size} bytes; one argument is at most {ARG_MAX} bytes")
    return text


def check_text(data: Any, file: Path, where: str = "") -> None:
    """No NUL byte and only encodable text in any key or string of the TOML tree.

    A NUL cannot travel in a path, an argument or an environment value (``execve`` cuts it or Python refuses),
    and a lone surrogate (possible only in a dict built in Python, not in TOML) cannot be written as UTF-8.
    """
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):  # only a dict built in Python: TOML keys are strings
                raise ConfigError(f"{file}: {where or 'top level'}: key {key!r} is not a string")
            inner = f"{where}.{shorten(key)}" if where else shorten(key)
            _check_string(key, file, where or "top level", what=f"the key {shorten(key)!r}")
            check_text(value, file, inner)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            check_text(item, file, f"{where}[{i}]")
    elif isinstance(data, str):
        _check_string(data, file, where, what=f"{shorten(data)!r}")


def _check_string(text: str, file: Path, where: str, *, what: str) -> None:
    if "\0" in text:
        raise ConfigError(
            f"{file}: {where}: {what} contains a NUL byte (\\0), which no path, argument or environment value can hold"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ConfigError(f"{file}: {where}: {what} is not valid Unicode text: {err.reason}") from None


def placeholder_values(
    config_dir: Path, home: Path, work: Path, run: str = "", stage: str = "", python: str = sys.executable
) -> dict[str, str]:
    return {
        "home": str(home),
        "work": str(work),
        "run": run,
        "stage": stage,
        "config_dir": str(config_dir),
        "python": python,  # the stack python (``python`` in f5guard.toml)
    }
