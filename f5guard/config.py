"""Find, parse and validate ``f5guard.toml``; every mistake is one line naming the file and the key (exit 2)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from f5guard.cloud.bucket import BucketURL
from f5guard.errors import ConfigError
from f5guard.fsutil import read_regular
from f5guard.recipe.kinds import RECIPE_KINDS
from f5guard.schema import (
    STORE_ENV,
    STORE_KINDS,
    Config,
    LeaseSettings,
    LogSettings,
    RestartPolicy,
    RunConfig,
    Scope,
    StackPython,
    StageConfig,
    StoreSettings,
    Table,
    check_argument,
    check_path,
    check_text,
    describe,
    expand,
    path_kind,
    placeholder_values,
    shorten,
)
from f5guard.stages.kinds import StageBase, StageKind, build_command
from f5guard.stages.overlap import patterns_overlap
from f5guard.stages.stackpython import AUTO, resolve
from f5guard.stages.walk import refused
from f5guard.training.kind import build_train
from f5guard.training.plugin import train_driver

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_ENV = "F5GUARD_CONFIG"
ELSEWHERE = "read for another machine (f5guard cloud): not looked for here"
CONFIG_NAME = "f5guard.toml"
DEFAULT_STOP_GRACE_S = 30.0
NAME_BYTES = 200  # run and stage names become folder names, with room for the suffixes f5guard adds
MAX_BACKUPS = 1000
MAX_BACKOFF_FACTOR = 10.0  # 10 ** 10 s is already centuries: a larger factor is a typo
CONFIG_MOST = 4 * 1024 * 1024  # a real config is a few KB: 4 MiB is a mistake (a log, a dataset)
MAX_DEPTH = 32  # the deepest real config nests 5 (runs.stages.params.<key>.<list>)
# Every stage kind: the generic command, the recipe's, and training.
KINDS: dict[str, StageKind] = {
    "command": StageKind(build_command),
    **{name: StageKind(build) for name, build in RECIPE_KINDS.items()},
    "train": StageKind(build_train, train_driver),
}


def find_config(explicit: str | os.PathLike[str] | None) -> Path:
    """``--config`` wins, then ``$F5GUARD_CONFIG``, then ``./f5guard.toml``."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    return Path.cwd() / CONFIG_NAME


def load_config(path: Path, *, find_python: bool = True, here: bool = True) -> Config:
    """Read and validate the config at ``path``; raises ConfigError with one line. ``find_python=False``: a
    command that runs no stage (status, plot) leaves ``python = "auto"`` unresolved (stages/stackpython.py).
    ``here=False``: the config is read for another machine (`f5guard cloud`): home need not exist here."""
    try:
        raw = read_regular(path, CONFIG_MOST)  # a FIFO or /dev/zero as --config must not hang every verb
    except FileNotFoundError:
        raise ConfigError(f"{path}: config not found (create one with `f5guard init`, or pass --config)") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err.strerror or err}") from err
    try:
        text = raw.decode("utf-8")
        _check_dotted(text, path)
        data = tomllib.loads(text)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: config is not UTF-8 text: {err}") from err
    except ValueError as err:  # TOMLDecodeError, and an integer of over 4300 digits (int_max_str_digits)
        raise ConfigError(f"{path}: invalid TOML: {err}") from err
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise ConfigError(f"{path}: invalid TOML: nested deeper than a config ever is") from None
    return parse_config(data, path.resolve(), find_python=find_python, here=here)


def _check_dotted(text: str, path: Path) -> None:
    """Refuse a key or table header of more than MAX_DEPTH dotted parts before tomllib reads it: its time grows
    with the square of the parts (50,000 parts took minutes). Only lines with that many dots are scanned."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.count(".") > MAX_DEPTH and _key_dots(line.lstrip()) > MAX_DEPTH:
            raise ConfigError(f"{path}: line {number}: a key with more than {MAX_DEPTH} dotted parts: "
                              "not a config of f5guard")  # fmt: skip


def _key_dots(line: str) -> int:
    """Dots outside quotes in the key of ``line`` (before ``=``) or in its table header (``[...]``)."""
    if line.startswith("#"):
        return 0
    dots, quote, escaped = 0, "", False
    for char in line:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == ".":
            dots += 1
        elif char == "=" or (char == "]" and line.startswith("[")):
            return dots
    return dots if line.startswith("[") else 0


def _check_depth(data: Any, path: Path) -> None:
    """Refuse a tree nested deeper than MAX_DEPTH before anything walks it recursively (a RecursionError on
    every verb, and in the daemon's config watcher, before). Iterative, so any depth is measured safely."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(f"{path}: tables or arrays nested more than {MAX_DEPTH} deep: not a config of f5guard")
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)


def parse_config(data: dict[str, Any], path: Path, *, find_python: bool = True, here: bool = True) -> Config:
    """Validate parsed TOML: every value is checked here, so the daemon never meets one that cannot work."""
    _check_depth(data, path)
    check_text(data, path)
    top = Table(data, "", path)
    config_dir = path.parent
    home = _directory(top, "home", config_dir, must_have_parent=here)
    work = _directory(top, "work", config_dir, must_have_parent=False)
    if home == work:
        top.fail("must differ from home: work is the fast runtime-local copy, home the persistent one", "work")
    if here:
        python = _python(top, config_dir, work, find_python)
    else:  # the interpreter is another machine's: named as written, checked there
        python = StackPython(top.text("python", AUTO), how=ELSEWHERE)
    lease = _lease(top.sub("lease"))
    store = _store(top.sub("store"))
    logs = _logs(top.sub("logs"))
    restart_default = _restart(top.sub("restart"), RestartPolicy())
    stop_grace = top.number("stop_grace_s", DEFAULT_STOP_GRACE_S, positive=True)
    run_tables = top.get("runs", list, [])
    runs: list[RunConfig] = []
    for i, raw_run in enumerate(run_tables):
        run = _run(Table(raw_run, f"runs[{i}]", path), config_dir, home, work, restart_default, stop_grace, python)
        if any(r.name == run.name for r in runs):
            raise ConfigError(f"{path}: runs[{i}].name: duplicate run name {run.name!r}")
        runs.append(run)
    top.done()
    if not runs:
        top.fail("no runs defined: add a [[runs]] table with at least one [[runs.stages]]", "runs")
    return Config(path=path, home=home, work=work, lease=lease, logs=logs, runs=tuple(runs), python=python,
                  store=store)  # fmt: skip


def _python(top: Table, config_dir: Path, work: Path, find: bool) -> StackPython:
    """``python``: the interpreter of the training stack, "auto" or a path (stages/stackpython.py)."""
    return resolve(top.text("python", AUTO), config_dir, work, top.key_path("python"), top.file, look=find)


def _directory(top: Table, key: str, config_dir: Path, *, must_have_parent: bool) -> Path:
    where = top.key_path(key)
    text = top.text(key)
    value = expand(text, placeholder_values(config_dir, Path(), Path()), where, top.file)
    path = Path(os.path.expanduser(check_path(value, where, top.file)))
    try:
        path = (path if path.is_absolute() else config_dir / path).resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop (Python < 3.13)
        top.fail(f"cannot resolve {path}: {err}", key)
    check_path(str(path), where, top.file)  # again: a symlink may have made it longer
    found = path_kind(path, where, top.file)
    if found == "file":
        top.fail(f"{path} exists and is not a directory", key)
    # Home on an unmounted Drive must fail loudly instead of silently filling a local folder.
    if must_have_parent and found is None and path_kind(path.parent, where, top.file) != "folder":
        top.fail(f"neither {path} nor its parent {path.parent} exists (is Drive mounted?)", key)
    return path


def _lease(t: Table) -> LeaseSettings:
    d = LeaseSettings()
    lease = LeaseSettings(
        duration_s=t.number("duration_s", d.duration_s, positive=True),
        heartbeat_s=t.number("heartbeat_s", d.heartbeat_s),  # 0: duration_s / 3
        takeover_slack_s=t.number("takeover_slack_s", d.takeover_slack_s),
        epoch_poll_s=t.number("epoch_poll_s", d.epoch_poll_s, positive=True),
        settle_s=t.number("settle_s", d.settle_s),
        arrival_timeout_s=t.number("arrival_timeout_s", d.arrival_timeout_s, positive=True),
        retention_delay_s=t.number("retention_delay_s", d.retention_delay_s),
    )
    if lease.heartbeat_s and lease.heartbeat_s >= lease.duration_s:
        t.fail(f"must be shorter than duration_s ({lease.duration_s:g})", "heartbeat_s")
    t.done()
    return lease


def _store(t: Table) -> StoreSettings:
    d = StoreSettings()
    kind = t.text("kind", d.kind)
    if kind not in STORE_KINDS:
        t.fail(f"must be one of {', '.join(STORE_KINDS)}, got {shorten(kind)!r}", "kind")
    where = {key: t.get(key, str, os.environ.get(env, "")).strip() for key, env in STORE_ENV.items()}
    if where["bucket"]:
        try:
            BucketURL.parse(where["bucket"])
        except ValueError as err:
            t.fail(f"{err} (here or in ${STORE_ENV['bucket']})", "bucket")
    elif kind == "bucket":
        t.fail(f'kind = "bucket" needs the bucket: bucket = "gs://NAME" (or ${STORE_ENV["bucket"]})', "kind")
    if where["mount"] and not Path(where["mount"]).is_absolute():
        t.fail(f"must be an absolute path, got {shorten(where['mount'])!r}", "mount")
    store = StoreSettings(
        kind=kind,  # type: ignore[arg-type]  # checked against STORE_KINDS above
        bucket=where["bucket"],
        mount=where["mount"],
        endpoint=where["endpoint"],
        upload_mb_per_s=t.number("upload_mb_per_s", d.upload_mb_per_s, positive=True, maximum=1e6),
        poll_s=t.number("poll_s", d.poll_s, positive=True),
    )
    t.done()
    return store


def _logs(t: Table) -> LogSettings:
    d = LogSettings()
    logs = LogSettings(
        max_bytes=t.integer("max_bytes", d.max_bytes, minimum=4096, maximum=2**40),
        backups=t.integer("backups", d.backups, minimum=1, maximum=MAX_BACKUPS),
        mirror_interval_s=t.number("mirror_interval_s", d.mirror_interval_s, positive=True),
    )
    t.done()
    return logs


def _restart(t: Table, d: RestartPolicy) -> RestartPolicy:
    policy = RestartPolicy(
        backoff_initial_s=t.number("backoff_initial_s", d.backoff_initial_s),
        backoff_factor=t.number("backoff_factor", d.backoff_factor, minimum=1.0, maximum=MAX_BACKOFF_FACTOR),
        backoff_max_s=t.number("backoff_max_s", d.backoff_max_s),
        stable_after_s=t.number("stable_after_s", d.stable_after_s),
        budget=t.integer("budget", d.budget),
        window_s=t.number("window_s", d.window_s, positive=True),
    )
    t.done()
    return policy


def check_name(t: Table, key: str, what: str) -> str:
    """Names become folder names; spaces, parentheses and Vietnamese letters are fine, slashes are not."""
    name = t.get(key, str)
    if not name.strip() or name in (".", "..") or "/" in name or any(ord(c) < 32 for c in name):
        t.fail(f"{what} name {shorten(name)!r} must be non-empty and contain no '/' or control characters", key)
    if len(name.encode()) > NAME_BYTES:
        t.fail(f"{what} name is {len(name.encode())} bytes; it becomes a folder name: at most {NAME_BYTES}", key)
    return name


def _run(
    t: Table,
    config_dir: Path,
    home: Path,
    work: Path,
    restart: RestartPolicy,
    grace: float,
    python: StackPython,
) -> RunConfig:
    name = check_name(t, "name", "run")
    run_env = t.str_map("env")
    stages: list[StageConfig] = []
    for j, raw_stage in enumerate(t.get("stages", list)):
        st = Table(raw_stage, f"{t.where}.stages[{j}]", t.file)
        made = tuple(out for s in stages for out in s.outputs)
        stage = _stage(st, config_dir, home, work, name, run_env, restart, grace, made, python)
        for key, patterns in (("inputs", stage.inputs), ("outputs", stage.outputs)):
            for pattern in patterns:
                if (why := refused(pattern)) is not None:  # a walk of the whole filesystem: refuse it now
                    st.fail(why, key)
        if any(s.name == stage.name for s in stages):
            raise ConfigError(f"{t.file}: {st.where}.name: duplicate stage name {stage.name!r} in run {name!r}")
        stages.append(stage)
    if not stages:
        t.fail("has no stages: add [[runs.stages]] tables", "stages")
    t.done()
    _check_data_flow(t, stages)
    return RunConfig(name=name, stages=tuple(stages))


def _stage(
    t: Table,
    config_dir: Path,
    home: Path,
    work: Path,
    run: str,
    run_env: dict[str, str],
    restart: RestartPolicy,
    grace: float,
    made_before: tuple[str, ...],
    python: StackPython,
) -> StageConfig:
    name = check_name(t, "name", "stage")
    kind = t.get("type", str, "command")
    entry = KINDS.get(kind)
    if entry is None:
        t.fail(f"unknown stage type {kind!r} (known: {', '.join(sorted(KINDS))})", "type")
    build = entry.build
    scope_text = t.get("scope", str, Scope.HOME.value)
    try:
        scope = Scope(scope_text)
    except ValueError:
        t.fail(f"must be 'runtime' or 'home', got {scope_text!r}", "scope")
    values = placeholder_values(config_dir, home, work, run, name, python.path)
    base = StageBase(
        name=name,
        env={},
        cwd=config_dir,
        inputs=(),
        outputs=(),
        params={},
        scope=scope,
        long_running=t.get("long_running", bool, False),
        restart=_restart(t.sub("restart"), restart),
        stop_grace_s=t.number("stop_grace_s", grace, positive=True),
        values=values,
        config_dir=config_dir,
        made_before=made_before,
        python=python,
    )
    env = _env(t, {**run_env, **t.str_map("env")}, values)
    cwd_text = t.get("cwd", str, "")
    cwd = Path(base.resolve(cwd_text, t.key_path("cwd"), t.file)) if cwd_text else config_dir
    if cwd_text:  # the stage starts in it: a typo must not become a new folder (at /nonexistent, say)
        base.require(str(cwd), t, "cwd", "the working folder", folder=True)
    params = t.get("params", dict, {})
    base = StageBase(
        **{
            **base.__dict__,
            "env": env,
            "cwd": cwd,
            "params": params,
            "inputs": tuple(base.resolve(p, t.key_path("inputs"), t.file) for p in t.str_list("inputs", [])),
            "outputs": tuple(base.resolve(p, t.key_path("outputs"), t.file) for p in t.str_list("outputs", [])),
        },
    )
    stage = build(t, base)
    t.done()
    return stage


def _env(t: Table, env: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    """Expanded values; each ``NAME=value`` entry within what ``execve`` takes."""
    out: dict[str, str] = {}
    for name, template in env.items():
        where = t.key_path(f"env.{shorten(name)}")
        out[name] = expand(template, values, where, t.file)
        check_argument(f"{name}={out[name]}", where, t.file)
    return out


def _check_data_flow(t: Table, stages: list[StageConfig]) -> None:
    """A stage may read only what earlier stages (or the outside world) make, never a later stage's output."""
    for i, reader in enumerate(stages):
        for pattern in reader.inputs:
            for maker in stages[i:]:
                for out in maker.outputs:
                    if patterns_overlap(pattern, out):
                        who = "itself" if maker is reader else f"the later stage {maker.name!r}"
                        t.fail(f"stage {reader.name!r} reads {pattern}, an output made only by {who}", "stages")


__all__ = ["CONFIG_ENV", "CONFIG_NAME", "describe", "find_config", "load_config", "parse_config"]
