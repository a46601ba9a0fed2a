"""Tell the caller when a checkpoint file in a directory is complete: one place picks inotify or polling.

F5-TTS writes ``model_last.pt`` / ``model_{N}.pt`` in place with ``torch.save``, so on a local disk the file
is complete at close-write (inotify); a writer that renames a temp file into place is complete at the move.
Network and FUSE paths get no close events (and none at all for changes made on another machine), so there
a polling watch reports a file once its (size, mtime) held still for ``STABLE_POLLS`` polls and ``STABLE_S``
seconds (``Settling`` decides; it is pure, so tests drive it with explicit polls and times).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from watchdog.events import FileClosedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

Kind = Literal["inotify", "polling"]
SUFFIXES = (".pt", ".safetensors")

# "Stable" on a polled folder: the same (size, mtime) for at least STABLE_S seconds AND at least STABLE_POLLS
# polls after the first sighting of that value. torch.save writes a checkpoint in place, one storage record at
# a time, and Colab's Drive FUSE mount can hold a single write() of a large record for seconds while its cache
# drains to the network (moving each CUDA storage to the CPU first adds its own pauses): a writer stalled for
# longer than one poll is not a finished file. 10 s is several such stalls, and only delays a checkpoint that
# F5-TTS saves every few minutes (the trainer's own `checkpoint` event wakes the sync anyway; an early report
# would only cost a sync pass that finds an unreadable file, and the writer's next write re-arms the file).
# The poll count keeps one late look from deciding alone: a daemon starved for STABLE_S (a loaded VM) may
# have starved the writer too, so it must still see the same value on later polls before it believes it.
STABLE_S = 10.0
STABLE_POLLS = 3

Stat = tuple[int, int]  # (st_size, st_mtime_ns)


def _inotify_observer() -> BaseObserver:
    # Imported lazily: the inotify module refuses to import off Linux; polling still works there.
    from watchdog.observers.inotify import InotifyObserver

    return InotifyObserver()


def _is_checkpoint(path: bytes | str) -> bool:
    return os.fsdecode(path).endswith(SUFFIXES)


@dataclass
class _Candidate:
    stat: Stat | None = None  # the value held since ``since``; None until the first poll sees the file
    since: float = 0.0
    polls: int = 0  # polls that saw ``stat`` again after the first sighting


class Settling:
    """Which changed files have held still long enough to be complete; the caller supplies stats and times.

    ``changed(path)`` (a watch event) starts or restarts the wait; ``poll(path, stat, now)`` records one look
    and says whether the file is complete now (it is then forgotten until it changes again). Thread-safe.
    """

    def __init__(self, *, stable_s: float = STABLE_S, stable_polls: int = STABLE_POLLS) -> None:
        if stable_s < 0 or stable_polls < 1:
            raise ValueError(f"need stable_s >= 0 and stable_polls >= 1, got {stable_s} and {stable_polls}")
        self.stable_s = stable_s
        self.stable_polls = stable_polls
        self._files: dict[Path, _Candidate] = {}
        self._lock = threading.Lock()

    def changed(self, path: Path) -> None:
        with self._lock:
            self._files[path] = _Candidate()

    def pending(self) -> list[tuple[Path, _Candidate]]:
        """The files waiting, each with the record a later ``poll`` must pass back (a change meanwhile wins)."""
        with self._lock:
            return list(self._files.items())

    def poll(self, path: Path, stat: Stat | None, now: float, seen: _Candidate | None = None) -> bool:
        """One look at ``path``: ``stat`` is None when it is gone. ``seen`` (from ``pending``): skip the look
        if the file changed while it was taken. True: complete now."""
        with self._lock:
            current = self._files.get(path)
            if current is None or (seen is not None and current is not seen):
                return False  # gone from the watch, or changed again while we looked: a later poll decides
            if stat is None:
                del self._files[path]
                return False
            if stat != current.stat:
                current.stat, current.since, current.polls = stat, now, 0
                return False
            current.polls += 1
            if current.polls >= self.stable_polls and now - current.since >= self.stable_s:
                del self._files[path]
                return True
            return False


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
    settling: Settling | None = None,
) -> Watcher:
    """Call ``on_complete(file)`` from a watcher thread whenever a checkpoint file in ``path`` is complete.

    Files already present when the watch starts are not reported: the caller scans once itself. ``settling``
    sets what "complete" means when polling (default: ``STABLE_S`` and ``STABLE_POLLS``).
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
    return _start_polling(path, on_complete, poll_interval_s, settling or Settling(), stopped)


def _stat(file: Path) -> Stat | None:
    """(size, mtime_ns); None when the file is gone. Other errors (a FUSE hiccup) propagate."""
    try:
        st = file.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def _start_polling(path: Path, on_complete: Callable[[Path], None], interval: float, settling: Settling,
                   stopped: threading.Event) -> Watcher:  # fmt: skip
    """The polling observer lists the directory; a ticker reports a changed file once it holds still."""

    def tick() -> None:
        while not stopped.wait(interval):
            for file, seen in settling.pending():
                try:
                    stat = _stat(file)
                except OSError:
                    continue  # a FUSE hiccup: look again next tick (the file stays pending)
                if settling.poll(file, stat, time.monotonic(), seen):
                    on_complete(file)

    observer = PollingObserver(timeout=interval)
    observer.schedule(_Handler(settling.changed), str(path))
    observer.start()
    ticker = threading.Thread(target=tick, name=f"f5guard-watch-{path.name}", daemon=True)
    ticker.start()
    return Watcher(observer, "polling", ticker, stopped)
