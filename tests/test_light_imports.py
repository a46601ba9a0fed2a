"""The daemon and the CLI never import torch (invariant 7): `status` must feel instant."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "f5guard.cli",
    "f5guard.cli.status",
    "f5guard.cli.start",
    "f5guard.cli.tail",
    "f5guard.cli.stop",
    "f5guard.cli.reset",
    "f5guard.cli.run",
    "f5guard.cli.init",
    "f5guard.cli.speak",
    "f5guard.cli.watch",
    "f5guard.cli.doctor",
    "f5guard.cli.cloud",
    "f5guard.daemon.process",
    "f5guard.daemon.supervisor",
    "f5guard.status.report",
    "f5guard.status.render",
    "f5guard.status.answer",
    "f5guard.status.watchview",
    "f5guard.status.watchlive",
    "f5guard.training.hangdump",
]


def test_no_heavy_imports() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'f5_tts', 'numpy', 'torchaudio', 'sky',"
        " 'boto3', 'botocore', 'google'))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"heavy modules imported: {out}"


def test_status_imports_no_structlog_or_watchdog() -> None:
    """The status path stays lean: logging and watching belong to the daemon."""
    code = (
        "import sys\nfrom f5guard.cli import status\nfrom f5guard.status import render, report\n"
        "print(','.join(m for m in ('structlog', 'watchdog', 'filelock', 'psutil') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_watch_in_a_notebook_imports_no_rich() -> None:
    """`!f5guard watch` draws plain lines (cr, lines): rich is imported only for a terminal's live view."""
    code = (
        "import sys\nfrom f5guard.cli import watch\n"
        "watch.make_drawer('cr', None)\nwatch.make_drawer('lines', None)\n"
        "print(','.join(m for m in ('rich', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_the_daemon_holds_no_rich_and_no_attrs() -> None:
    """structlog would pull in rich, pygments and attrs for console tracebacks (+6 MB resident in the daemon);
    answering `status` imports rich for the tables, still without attrs."""
    code = (
        "import sys\nfrom f5guard.daemon import process\n"
        "print(','.join(m for m in ('rich', 'pygments', 'attr') if m in sys.modules))\n"
        "from f5guard.status import answer\n"
        "try:\n    answer._render({}, 80, False)\nexcept Exception:\n    pass\n"
        "print(','.join(m for m in ('rich', 'pygments', 'attr') if m in sys.modules))\n"
        "import structlog.dev\nprint(structlog.dev.rich is None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["", "rich", "True"]
