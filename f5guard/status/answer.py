"""The daemon's side of the ``status`` fast path: answer request files with the same report and renderer the
full CLI uses, and keep the config → work-dir note the client looks up."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from f5guard.fsutil import atomic_write_bytes
from f5guard.schema import Config
from f5guard.status.quick import REQUEST_DIR, cache_entry

if TYPE_CHECKING:
    from f5guard.status.report import StatusReport


def note_work_dir(config: Config) -> None:
    """Let ``status`` find this daemon without parsing the config (it checks the config is unchanged)."""
    with contextlib.suppress(OSError):
        st = config.path.stat()
        atomic_write_bytes(
            Path(cache_entry(str(config.path))), f"{st.st_mtime_ns} {st.st_size}\n{config.work}\n".encode()
        )


def answer_requests(config: Config) -> int:
    """Answer every pending request; returns how many were answered."""
    folder = config.work / REQUEST_DIR
    try:
        requests = sorted(p for p in folder.iterdir() if p.suffix == ".req")
    except OSError:
        return 0
    if not requests:
        return 0
    from f5guard.status.report import build_report, exit_code, to_json

    report = build_report(config)
    code = exit_code(report)
    for request in requests:
        try:
            kind, width, color = request.read_text(encoding="utf-8").split()[:3]
            body = to_json(report) if kind == "json" else _render(report, int(width), color == "1")
            atomic_write_bytes(request.with_suffix(".out"), f"{code}\n{body}".encode())
        except (OSError, ValueError):
            continue
        finally:
            with contextlib.suppress(OSError):
                os.unlink(request)
    return len(requests)


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
