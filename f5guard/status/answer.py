"""The daemon's side of the ``status`` fast path: render the report (built from the daemon's memory) with the same
renderer the full CLI uses, and keep the config → work-dir note the client looks up."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from f5guard.control.protocol import StatusAnswer, StatusRequest
from f5guard.fsutil import atomic_write_bytes
from f5guard.schema import Config
from f5guard.status.quick import cache_entry

if TYPE_CHECKING:
    from f5guard.status.report import StatusReport


def note_work_dir(config: Config) -> None:
    """Let ``status`` find this daemon without parsing the config (it checks the config is unchanged)."""
    with contextlib.suppress(OSError):
        st = config.path.stat()
        atomic_write_bytes(
            Path(cache_entry(str(config.path))), f"{st.st_mtime_ns} {st.st_size}\n{config.work}\n".encode()
        )


def answer_status(report: StatusReport, request: StatusRequest) -> StatusAnswer:
    """The report rendered for the client's terminal (its width and colours), or as JSON, with its exit code."""
    from f5guard.status.report import exit_code, to_json

    body = to_json(report) if request.as_json else _render(report, request.columns, request.color)
    return StatusAnswer(exit_code(report), body)


def _render(report: StatusReport, columns: int, color: bool) -> str:
    # rich.pretty imports attrs only to pretty-print attrs classes (a report is plain dicts): +4 MB resident in
    # the daemon for as long as it runs. Hidden while rich is first imported here (None: "not installed").
    hide = "attr" not in sys.modules and "f5guard.status.render" not in sys.modules
    if hide:
        sys.modules["attr"] = None  # type: ignore[assignment]
    try:
        from f5guard.status.render import make_console, render_status
    finally:
        if hide and "attr" in sys.modules and sys.modules["attr"] is None:
            del sys.modules["attr"]

    buffer = io.StringIO()
    render_status(report, make_console(columns, file=buffer, color=color))
    return buffer.getvalue()
