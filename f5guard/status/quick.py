"""The fast path of ``f5guard status``: when a daemon runs here, it renders the answer itself.

The client imports nothing but the standard library's smallest modules (no click, no config schema, no rich,
not even json, contextlib or signal, whose enum costs a few ms): it finds the work dir in a cache the daemon
keeps, checks the daemon's flock, drops a request file, pokes the daemon with SIGUSR2 and prints the rendered
answer. Anything unusual (no daemon, an edited
config, an unknown flag, no answer within a second) returns None and the full CLI takes over, so both paths
print the same thing: the daemon uses the same report and renderer.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time

CONFIG_ENV = "F5GUARD_CONFIG"
CONFIG_NAME = "f5guard.toml"
REQUEST_DIR = "status-requests"
ANSWER_TIMEOUT_S = 1.0
# SIGUSR2's number on Linux everywhere f5guard runs (x86, ARM, RISC-V, POWER, s390: signal(7)); the daemon
# installs its handler as signal.SIGUSR2, and tests check both agree.
_SIGUSR2_LINUX = 12
_OTHER_NUMBERING = ("alpha", "mips", "parisc", "sparc")


def sigusr2() -> int:
    """SIGUSR2's number without importing ``signal`` where Linux's numbering is known."""
    if sys.platform == "linux" and not os.uname().machine.startswith(_OTHER_NUMBERING):
        return _SIGUSR2_LINUX
    import signal

    return int(signal.SIGUSR2)


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


def _daemon_pid(work: str) -> int | None:
    """The pid of the daemon holding ``work``'s flock, or None (not running: the full CLI says so)."""
    try:
        fd = os.open(os.path.join(work, "daemon.lock"), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # held: a daemon runs
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
    try:
        with open(os.path.join(work, "daemon.pid.json"), encoding="utf-8") as handle:
            text = handle.read()
        return int(text.split('"pid":', 1)[1].split(",", 1)[0].split("}", 1)[0])
    except (OSError, IndexError, ValueError):
        return None


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
    pid = _daemon_pid(work) if work else None
    if work is None or pid is None:
        return None
    answer = ask_daemon(work, pid, as_json)
    if answer is None:
        return None
    code, body = answer
    sys.stdout.write(body)
    sys.stdout.flush()
    return code


def ask_daemon(work: str, pid: int, as_json: bool) -> tuple[int, str] | None:
    """The exit code and the rendered status the daemon of ``work`` answers, or None if it does not."""
    folder = os.path.join(work, REQUEST_DIR)
    me = f"{os.getpid()}-{time.monotonic_ns()}"
    request, answer = os.path.join(folder, f"{me}.req"), os.path.join(folder, f"{me}.out")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(request + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(f"{'json' if as_json else 'text'} {_columns()} {int(sys.stdout.isatty())}\n")
        os.replace(request + ".tmp", request)
        os.kill(pid, sigusr2())
    except OSError:
        return None
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while not os.path.exists(answer):
        if time.monotonic() > deadline:
            for leftover in (request, answer):
                try:  # noqa: SIM105 - contextlib is an import this path does without
                    os.unlink(leftover)
                except OSError:
                    pass
            return None
        time.sleep(0.002)
    try:
        with open(answer, encoding="utf-8") as handle:
            head, _, body = handle.read().partition("\n")
        os.unlink(answer)
        return int(head), body
    except (OSError, ValueError):
        return None
