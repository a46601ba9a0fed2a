"""``f5guard watch [RUN]``: a live view until every watched run is done (exit 0) or one failed (exit 1).

A notebook cell that runs is what keeps Colab from recycling an idle runtime, so the notebook ends with
``!f5guard watch``. Colab runs ``!`` commands on a pseudo-terminal of no size, shows ANSI colours, clears
back to the last newline on a carriage return, and ignores cursor movement (colabtools#166): rich's
multi-line redraw piles up there, a ``\\r``-redrawn line does not. Hence three ways to draw:

- ``cr``: one line redrawn with a leading carriage return (as tqdm does), events printed above it; the
  default in a notebook (Colab, Jupyter) and on a terminal of no size;
- ``lines``: the same line printed every ``--every`` seconds, events as they happen; the default when the
  output is a pipe or a file;
- ``live``: rich's Live view on a real terminal (the default there).

Interrupting it (Ctrl-C, stopping the cell, SIGTERM) ends the watch quietly and never touches the daemon.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import click

from f5guard import pidfile
from f5guard.cli.common import DaemonHandle, config_option, find_daemon
from f5guard.errors import DaemonError, UsageError
from f5guard.status.quick import ask_daemon
from f5guard.status.watchview import RunView, clock, events, line, outcome, run_view, watched

if TYPE_CHECKING:
    from f5guard.status.report import StatusReport

MODES = ("auto", "cr", "lines", "live")
REFRESH_S = 2.0  # how often the view is redrawn (cr, live); each redraw asks the daemon for one report
EVERY_S = 30.0  # how often `lines` prints the progress line (events are printed when they happen)
MODE_HELP = "cr: one line redrawn (notebooks); lines: a line every --every s (logs); live: a terminal view."
EVERY_HELP = f"Seconds between redraws (cr, live: {REFRESH_S:g}) or progress lines (lines: {EVERY_S:g})."
_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}  # the shell's 128 + signal number


def in_notebook(env: Mapping[str, str]) -> bool:
    """A Colab runtime (its cells and its terminal) or a Jupyter kernel's child."""
    return bool(env.get("COLAB_RELEASE_TAG") or env.get("JPY_PARENT_PID"))


def pick_mode(env: Mapping[str, str], isatty: bool, columns: int) -> str:
    """``cr`` in a notebook (Colab's ``!`` and Jupyter's run on a pseudo-terminal whose frontend knows no cursor
    movement) and on a terminal of no size; ``live`` on a real terminal; ``lines`` into a pipe or a file."""
    if in_notebook(env):
        return "cr"
    if isatty:
        return "live" if columns > 0 else "cr"
    return "lines"


def snapshot(handle: DaemonHandle) -> StatusReport | None:
    """The status report through the path ``status`` takes: the running daemon's own answer (it renders with
    the config it runs with), else the report built from files. None: neither answers (no config parses)."""
    info = pidfile.running_daemon(handle.work.lock, handle.work.pidfile)
    if info is not None:
        answer = ask_daemon(str(handle.work.root), as_json=True)
        if answer is not None:
            report: StatusReport = json.loads(answer[1])
            return report
    if handle.config is None:
        return None
    from f5guard.status.report import build_report

    return build_report(handle.config)


class Drawer(Protocol):
    def event(self, text: str) -> None: ...
    def show(self, views: Sequence[RunView]) -> None: ...
    def close(self, views: Sequence[RunView]) -> None: ...


class Lines:
    """A progress line per run every ``every`` seconds, events as they happen: readable in any log."""

    def __init__(self, out: TextIO, every: float) -> None:
        self.out, self.every, self.next_at = out, every, 0.0

    def event(self, text: str) -> None:
        self.out.write(f"{clock()} {text}\n")
        self.out.flush()

    def show(self, views: Sequence[RunView], *, force: bool = False) -> None:
        if not force and time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + self.every
        for view in views:
            self.out.write(f"{clock()} {line(view)}\n")
        self.out.flush()

    def close(self, views: Sequence[RunView]) -> None:
        self.show(views, force=True)


class CarriageReturn:
    """One line redrawn in place: ``\\r`` + the line, padded over the previous one (Jupyter overwrites from the
    line's start where Colab clears it), cut to a real terminal's width (``\\r`` only rewinds one row there)."""

    def __init__(self, out: TextIO, columns: int) -> None:
        self.out, self.columns, self.drawn = out, columns, 0

    def _draw(self, text: str) -> None:
        if self.columns > 1 and len(text) >= self.columns:
            text = text[: self.columns - 2] + "…"
        self.out.write("\r" + text + " " * max(0, self.drawn - len(text)))
        self.out.flush()
        self.drawn = len(text)

    def event(self, text: str) -> None:
        self._draw(f"{clock()} {text}")  # over the progress line, which is drawn again below it
        self.out.write("\n")
        self.drawn = 0

    def show(self, views: Sequence[RunView]) -> None:
        self._draw(f"{clock()} " + "  |  ".join(line(v) for v in views))

    def close(self, views: Sequence[RunView]) -> None:
        if views:
            self.show(views)
        if self.drawn:
            self.out.write("\n")
            self.out.flush()
            self.drawn = 0


class Live:
    """rich's Live view on a terminal: one block per run, events scrolling above it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live as RichLive

        self.console = Console(highlight=False)
        self.live = RichLive(console=self.console, auto_refresh=False, transient=False)
        self.live.start()

    def event(self, text: str) -> None:
        self.console.print(f"{clock()} {text}", markup=False, highlight=False)

    def show(self, views: Sequence[RunView]) -> None:
        from f5guard.status.watchlive import render_views

        self.live.update(render_views(views), refresh=True)

    def close(self, views: Sequence[RunView]) -> None:
        if views:
            self.show(views)
        self.live.stop()


def make_drawer(mode: str, every: float | None, out: TextIO = sys.stdout) -> Drawer:
    # Jupyter's `!` runs on a pty of 80 columns (pexpect) while its output area wraps long lines itself and a
    # carriage return rewinds the whole line: nothing is cut there. Colab's pty has no size at all.
    columns = shutil.get_terminal_size((0, 0)).columns if out.isatty() and "JPY_PARENT_PID" not in os.environ else 0
    if mode == "auto":
        mode = pick_mode(os.environ, out.isatty(), columns)
    if mode == "live":
        return Live()
    if mode == "cr":
        return CarriageReturn(out, columns)
    return Lines(out, every if every is not None else EVERY_S)


class Interrupted:
    """SIGINT/SIGTERM/SIGHUP end the watch between two reports: a flag, never an exception in mid-request
    (a request file abandoned half way would leave the daemon's answer behind). A plain int, not a
    threading.Event: the handler runs on the main thread, which may be inside that Event's own lock."""

    def __init__(self) -> None:
        self.code = 0
        self.saved: dict[int, Any] = {}

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as a signal asked to end (sleep resumes after a handler)."""
        end = time.monotonic() + seconds
        while not self.code and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
        return bool(self.code)

    def __enter__(self) -> Interrupted:
        for sig in _SIGNALS:
            self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.code = self.code or _SIGNALS.get(signal.Signals(signum), 130)

    def __exit__(self, *_: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


@click.command("watch")
@click.argument("run", required=False)
@config_option
@click.option("--mode", type=click.Choice(MODES), default="auto", show_default=True, help=MODE_HELP)
@click.option("--every", type=click.FloatRange(min=0.2), default=None, help=EVERY_HELP)
def command(run: str | None, config_path: str | None, mode: str, every: float | None) -> int:
    """Follow every run (or RUN) live until it is done (exit 0) or failed (exit 1); keeps a notebook cell busy.

    Interrupting it (Ctrl-C, stopping the cell) only ends the watch: the supervisor keeps running."""
    handle = find_daemon(config_path, find_python=False)
    where = handle.config.path if handle.config is not None else handle.work.root
    if handle.info is None:
        raise DaemonError(f"no f5guard supervisor runs for {where}: nothing to watch (start it: f5guard start)")
    report = snapshot(handle)
    if report is None:
        raise DaemonError(f"{handle.note}; and that daemon did not answer (see `f5guard tail`)")
    names = [run] if run is not None else None
    if run is not None and not watched(report, names):
        raise UsageError(f"no run named {run!r} in {where} (runs: {', '.join(r['name'] for r in report['runs'])})")
    drawer = make_drawer(mode, every)
    # lines print every ``every`` s but look every REFRESH_S at most, so a stage shorter than a print still shows
    interval = min(every, REFRESH_S) if every is not None else REFRESH_S
    with Interrupted() as stop:
        drawer.event(f"watching {', '.join(r['name'] for r in watched(report, names))} (supervisor pid "
                     f"{handle.info.pid}); stopping this watch never stops the supervisor")  # fmt: skip
        before: StatusReport | None = None
        while True:
            result = outcome(report, names)
            for text in events(before, report, names):
                if result is None or text != result.message:  # the last line says it
                    drawer.event(text)
            views = [run_view(report, r) for r in watched(report, names)]
            if result is not None or stop.code:
                drawer.close(views)
                break
            drawer.show(views)
            before = report
            stop.wait(interval)
            report = snapshot(handle) or _gone(handle, report)
    if stop.code:
        return stop.code
    assert result is not None
    if result.code:
        click.echo(f"f5guard: {result.message}", err=True)
    else:
        click.echo(f"{clock()} {result.message}")
    return result.code


def _gone(handle: DaemonHandle, last: StatusReport) -> StatusReport:
    """No report at all (the config no longer parses and its daemon is gone): the last one, marked ended."""
    daemon = dict(last["daemon"], running=False, last_exit=None)
    return {**last, "daemon": daemon}  # type: ignore[typeddict-item]
