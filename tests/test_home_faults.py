"""Faults of home the user must see in `status`, not only in `tail`: a home that fills up under a running daemon
(a full Drive), and comes back."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Project
from tests.sync_support import tmpfs  # noqa: F401 - fixture
from tests.test_control_without_config import SERVE, start_serving

Mount = Callable[[str, int], Path]


def fill(folder: Path) -> Path:
    """Write until the filesystem refuses: another writer filled Drive."""
    filler = folder / "filler.bin"
    with filler.open("wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * (1 << 20))
            handle.flush()
    return filler


def test_full_home_is_shown_in_status_then_cleared(make_project, tmpfs: Mount) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    home = tmpfs("home", 8)
    p: Project = make_project(SERVE.replace("[[runs]]", "[logs]\nmirror_interval_s = 0.5\n\n[[runs]]"), home=home)
    start_serving(p)
    filler = fill(home)
    p.wait_for(lambda: "home problem" in p.cli("status").stdout, timeout=60, what="the home problem in status")
    text = p.cli("status").stdout
    assert "No space left on device" in text and "training continues locally" in text
    filler.unlink()
    p.wait_for(lambda: p.status()["daemon"]["home_problem"] is None, timeout=60, what="home writable again")
    stop = p.cli("stop", "--timeout", "30")
    assert stop.returncode == 0 and "stopped in" in stop.stdout
