"""The checkpoint watcher: close-write and rename mean "complete" (inotify); polling waits for stability."""
# ruff: noqa: F811  (pytest fixtures imported from tests.sync_support come back as parameters)

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from watchdog.observers.inotify import InotifyObserver

from f5guard.checkpoints import watch
from f5guard.checkpoints.watch import Watcher, watch_dir
from tests.sync_support import CheckpointMaker, maker, wait_until  # noqa: F401 - fixtures


class Seen:
    """Collects reported paths from the watcher thread."""

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.lock = threading.Lock()

    def __call__(self, path: Path) -> None:
        with self.lock:
            self.paths.append(path)

    def names(self) -> list[str]:
        with self.lock:
            return [p.name for p in self.paths]


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Path, Seen, list[Watcher]]]:
    seen = Seen()
    started: list[Watcher] = []
    yield tmp_path, seen, started
    for watcher in started:
        watcher.stop()


def test_inotify_reports_a_checkpoint_when_it_is_closed(watched: tuple[Path, Seen, list[Watcher]]) -> None:
    """Not while it is being written (F5-TTS writes in place), only at close; other names are ignored."""
    folder, seen, started = watched
    started.append(watcher := watch_dir(folder, seen))
    assert watcher.kind == "inotify"
    with (folder / "model_last.pt").open("wb") as handle:
        handle.write(b"x" * 4096)
        handle.flush()
        time.sleep(0.3)
        assert seen.names() == []
    (folder / "notes.txt").write_text("not a checkpoint")
    (folder / ".model_last.pt.f5guard-tmp-1").write_bytes(b"our own temp copy")
    wait_until(lambda: seen.names() == ["model_last.pt"], what="the close-write event")
    time.sleep(0.2)
    assert seen.names() == ["model_last.pt"]


def test_inotify_reports_a_renamed_in_checkpoint_by_its_new_name(
        watched: tuple[Path, Seen, list[Watcher]]) -> None:  # fmt: skip
    """temp + os.replace writers (and safetensors exports) are complete at the move."""
    folder, seen, started = watched
    temp = folder / "upload.partial"
    temp.write_bytes(b"y" * 100)
    started.append(watch_dir(folder, seen))
    os.replace(temp, folder / "model_30.safetensors")
    wait_until(lambda: seen.names() == ["model_30.safetensors"], what="the move event")


@pytest.mark.train
def test_one_torch_save_is_reported(watched: tuple[Path, Seen, list[Watcher]],
                                    maker: CheckpointMaker) -> None:  # fmt: skip
    """F5-TTS's own write path (torch.save to the final name) ends in a close-write on that name."""
    folder, seen, started = watched
    started.append(watch_dir(folder, seen))
    maker.make(folder / "model_last.pt", 7, 1 << 20)
    wait_until(lambda: "model_last.pt" in seen.names(), what="the torch.save close event")
    time.sleep(0.2)
    assert seen.names() == ["model_last.pt"]


def test_polling_reports_a_file_once_it_stops_changing(watched: tuple[Path, Seen, list[Watcher]]) -> None:
    """No close events on FUSE: a growing file is reported once, after (size, mtime) held for a poll."""
    folder, seen, started = watched
    started.append(watcher := watch_dir(folder, seen, polling=True, poll_interval_s=0.1))
    assert watcher.kind == "polling"
    target = folder / "model_500.pt"
    with target.open("wb") as handle:
        for _ in range(8):  # keeps growing for ~0.8 s: eight polls
            handle.write(b"z" * 1024)
            handle.flush()
            time.sleep(0.1)
            assert seen.names() == []
    wait_until(lambda: seen.names() == ["model_500.pt"], what="the stable file to be reported")
    time.sleep(0.4)
    assert seen.names() == ["model_500.pt"]


def test_a_failing_inotify_falls_back_to_polling_and_says_so(
        watched: tuple[Path, Seen, list[Watcher]], monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """inotify limits reached (EMFILE): the watch still works, by polling, and the note names the cause."""
    folder, seen, started = watched

    class ExhaustedInotify(InotifyObserver):
        def start(self) -> None:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(watch, "_inotify_observer", ExhaustedInotify)
    notes: list[str] = []
    started.append(watcher := watch_dir(folder, seen, poll_interval_s=0.1, on_note=notes.append))
    assert watcher.kind == "polling"
    assert notes == [f"inotify watch on {folder} failed (Too many open files); polling every 0.1 s instead"]
    (folder / "model_last.pt").write_bytes(b"w" * 10)
    wait_until(lambda: seen.names() == ["model_last.pt"], what="the polled report")


def test_stop_ends_reports_and_a_missing_folder_is_refused(watched: tuple[Path, Seen, list[Watcher]]) -> None:
    folder, seen, _ = watched
    for polling in (False, True):
        watcher = watch_dir(folder, seen, polling=polling, poll_interval_s=0.05)
        watcher.stop()
        watcher.stop()
    (folder / "model_1.pt").write_bytes(b"v")
    time.sleep(0.3)
    assert seen.names() == []
    with pytest.raises(NotADirectoryError, match=r"cannot watch .*missing for checkpoints"):
        watch_dir(folder / "missing", seen)
