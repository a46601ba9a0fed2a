"""An attempt's exit is reported only after its output reached the stage log: the judgment reads the last lines,
and a CUDA OOM's traceback is the last thing a trainer writes (a missed one is a batch not halved)."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from f5guard.redact import Redactor
from f5guard.stages.attempt import Attempt
from f5guard.stages.stagelog import StageLog

# 40 lines, then the traceback's last line without a newline, then exit 1 at once
CHILD = (
    "import sys\n"
    "for i in range(40):\n    print(f'line {i}')\n"
    "sys.stdout.write('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB')\n"
    "sys.stdout.flush()\nsys.exit(1)\n"
)


def test_exit_is_reported_after_the_last_line_was_read(tmp_path: Path) -> None:
    """Defect: the waiter thread reported the exit while the pump thread was still copying output."""
    seen_at_exit: list[list[str]] = []
    done = threading.Event()

    def slow_reader(_line: str) -> None:
        time.sleep(0.02)  # a busy control thread, a slow disk: the pump lags the child by a second here

    log = StageLog(tmp_path / "stage.log", max_bytes=1 << 20, backups=1, redactor=Redactor(), on_line=slow_reader)

    def on_exit(attempt: Attempt) -> None:
        seen_at_exit.append(list(log.last_lines))
        done.set()

    attempt = Attempt([sys.executable, "-c", CHILD], env=dict(os.environ), cwd=tmp_path, log=log, on_exit=on_exit)
    assert done.wait(30), "the exit was reported"
    assert attempt.exit is not None and attempt.exit.returncode == 1
    (lines,) = seen_at_exit
    assert lines and lines[-1] == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", lines[-3:]
    log.close()
