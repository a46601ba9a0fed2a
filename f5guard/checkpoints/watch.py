"""Tell the caller when a checkpoint file in a directory is complete: one place picks inotify or polling.

F5-TTS writes ``model_last.pt`` / ``model_{N}.pt`` in place with ``torch.save``, so on a local disk the file
is complete at close-write (inotify); a writer that renames a temp file into place is complete at the move.
Network and FUSE paths get no close events (and none at all for changes made on another machine), so there
a polling observer reports a file once its (size, mtime) stayed the same between two polls.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from watchdog.events import FileClosedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

Kind = Literal["inotify", "polling"]
SUFFIXES = (".pt", ".safetensors")


def _inotify_observer() -> BaseObserver:
    # Imported lazily: the inotify module refuses to import off Linux; polling still works there.
    from watchdog.observers.inotify import InotifyObserver

    return InotifyObserver()


def _is_checkpoint(path: bytes | str) -> bool:
    return os.fsdecode(path).endswith(SUFFIXES)


class _Handler(FileSystemEventHandler):
    """Turns watchdog events into "maybe complete" paths; inotify ones are final, polling ones are pending."""

    def __init__(self, report: Callable[[Path], None]) -> None:
        self._report = report

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            path = event.dest_path  # a temp file renamed into place: complete at the move
        elif event.event_type in ("closed", "created", "modified"):
            path = event.src_path
        else:
            return
        if _is_checkpoint(path):
            self._report(Path(os.fsdecode(path)))


class Watcher:
    """A running watch; ``kind`` says which mechanism it uses, ``stop()`` ends it (idempotent)."""

    def __init__(self, observer: BaseObserver, kind: Kind, ticker: threading.Thread | None,
                 stopped: threading.Event) -> None:  # fmt: skip
        self._observer = observer
        self.kind: Kind = kind
        self._ticker = ticker
        self._stopped = stopped

    def stop(self) -> None:
        self._stopped.set()
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join(timeout=5)
        if self._ticker is not None:
            self._ticker.join(timeout=5)


def watch_dir(
    path: Path,
    on_complete: Callable[[Path], None],
    *,
    polling: bool = False,
    poll_interval_s: float = 2.0,
    on_note: Callable[[str], None] | None = None,
) -> Watcher:
    """Call ``on_complete(file)`` from a watcher thread whenever a checkpoint file in ``path`` is complete.

    Files already present when the watch starts are not reported: the caller scans once itself.
    """
    if not path.is_dir():  # the polling observer would die silently in its thread on a missing folder
        raise NotADirectoryError(f"cannot watch {path} for checkpoints: not a directory")
    stopped = threading.Event()
    if not polling:
        observer = _inotify_observer()
        observer.schedule(_Handler(on_complete), str(path), event_filter=[FileClosedEvent, FileMovedEvent])
        try:
            observer.start()
        except OSError as err:  # inotify limits reached (EMFILE / ENOSPC), or a filesystem refusing it
            if on_note is not None:
                on_note(f"inotify watch on {path} failed ({err.strerror or err}); polling every "
                        f"{poll_interval_s:g} s instead")  # fmt: skip
        else:
            return Watcher(observer, "inotify", None, stopped)
    return _start_polling(path, on_complete, poll_interval_s, stopped)


def _start_polling(path: Path, on_complete: Callable[[Path], None], interval: float,
                   stopped: threading.Event) -> Watcher:  # fmt: skip
    """The polling observer lists the directory; a ticker reports a changed file once it holds still."""
    pending: dict[Path, tuple[int, int] | None] = {}  # path -> (size, mtime_ns) at the previous tick
    lock = threading.Lock()

    def changed(file: Path) -> None:
        with lock:
            pending[file] = None

    def tick() -> None:
        while not stopped.wait(interval):
            with lock:
                candidates = list(pending.items())
            for file, before in candidates:
                try:
                    st = file.stat()
                except FileNotFoundError:
                    with lock:
                        pending.pop(file, None)
                    continue
                except OSError:
                    continue  # a FUSE hiccup: look again next tick
                now = (st.st_size, st.st_mtime_ns)
                with lock:
                    if pending.get(file, before) != before:
                        continue  # changed again while we looked: the next tick decides
                    if now == before:
                        del pending[file]
                    else:
                        pending[file] = now
                        continue
                on_complete(file)

    observer = PollingObserver(timeout=interval)
    observer.schedule(_Handler(changed), str(path))
    observer.start()
    ticker = threading.Thread(target=tick, name=f"f5guard-watch-{path.name}", daemon=True)
    ticker.start()
    return Watcher(observer, "polling", ticker, stopped)
