"""The fast path of ``f5guard status``: when a daemon runs here, it answers from its memory and renders itself.

The client imports nothing but the standard library's smallest modules (no click, no config schema, no rich,
not even json, contextlib or signal, whose enum costs a few ms): it finds the work dir in a cache the daemon
keeps, sends a status request on the daemon's socket (control/client.py) and prints the rendered answer.
Anything unusual (no daemon, an edited config, an unknown flag, no answer within a second) returns None and the
full CLI takes over, so both paths print the same thing: the daemon uses the same report and renderer.
"""

from __future__ import annotations

import os
import sys

from f5guard.control.client import ask
from f5guard.control.protocol import StatusAnswer, StatusRequest

CONFIG_ENV = "F5GUARD_CONFIG"
CONFIG_NAME = "f5guard.toml"


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "f5guard", "work-dirs")


def cache_entry(config_path: str) -> str:
    """Where the daemon notes the work dir of ``config_path`` (a real path) for this fast path."""
    name = config_path.replace("%", "%25").replace("/", "%2F")
    return os.path.join(cache_dir(), name[-200:])


def _parse(args: list[str]) -> tuple[bool, str | None] | None:
    as_json, config = False, None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--json":
            as_json = True
        elif arg in ("--config", "-c") and i + 1 < len(args):
            config, i = args[i + 1], i + 1
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        else:
            return None  # --help, typos...: the full CLI words the answer
        i += 1
    return as_json, config


def noted_work_dir(config: str) -> tuple[str, str] | None:
    """(stamp of the config when its daemon started, the work dir it runs in), as that daemon noted them."""
    try:
        with open(cache_entry(config), encoding="utf-8") as handle:
            stamp, work = handle.read().splitlines()[:2]
    except (OSError, ValueError):
        return None
    return stamp, work


def _work_dir(config: str) -> str | None:
    """The noted work dir while the config is unchanged since its daemon started (else the full CLI answers)."""
    noted = noted_work_dir(config)
    try:
        st = os.stat(config)
    except OSError:
        return None
    return noted[1] if noted and noted[0] == f"{st.st_mtime_ns} {st.st_size}" else None


def _columns() -> int:
    """What shutil.get_terminal_size would say (COLUMNS, then the terminal), 0 when unknown: the renderer
    then picks the same width as the full CLI."""
    try:
        return int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (OSError, ValueError, AttributeError):
        return 0


def try_quick_status(args: list[str]) -> int | None:
    """Print the daemon's answer and return the exit code, or None to let the full CLI answer."""
    parsed = _parse(args)
    if parsed is None:
        return None
    as_json, config = parsed
    config = config or os.environ.get(CONFIG_ENV) or CONFIG_NAME
    config = os.path.realpath(os.path.expanduser(config))
    work = _work_dir(config)
    if work is None:
        return None
    answer = ask_daemon(work, as_json)
    if answer is None:
        return None
    code, body = answer
    sys.stdout.write(body)
    sys.stdout.flush()
    return code


def ask_daemon(work: str, as_json: bool) -> tuple[int, str] | None:
    """The exit code and the status the daemon of ``work`` renders for this terminal, or None if it does not
    answer (not running, not serving yet, busy): `status` and `watch` then build the report from files."""
    answer = ask(work, StatusRequest(as_json=as_json, columns=_columns(), color=sys.stdout.isatty()))
    return (answer.code, answer.body) if isinstance(answer, StatusAnswer) else None
