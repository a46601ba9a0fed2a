"""The checkpoint watcher: close-write and rename mean "complete" (inotify); polling waits for stability
(the rule itself is tested with explicit polls and times, not against the scheduler)."""
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
from f5guard.checkpoints.watch import STABLE_POLLS, STABLE_S, Settling, Watcher, watch_dir
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
    """No close events on FUSE: a growing file is reported once, after (size, mtime) held for the stability
    window. The writer pauses 0.1 s between writes, a twentieth of the 2 s window: no scheduler delay turns a
    pause into "complete"."""
    folder, seen, started = watched
    settling = Settling(stable_s=2.0, stable_polls=3)
    started.append(watcher := watch_dir(folder, seen, polling=True, poll_interval_s=0.05, settling=settling))
    assert watcher.kind == "polling"
    target = folder / "model_500.pt"
    with target.open("wb") as handle:
        for _ in range(8):  # keeps growing for ~0.8 s: sixteen polls
            handle.write(b"z" * 1024)
            handle.flush()
            time.sleep(0.1)
            assert seen.names() == []
    done = time.monotonic()
    wait_until(lambda: seen.names() == ["model_500.pt"], what="the stable file to be reported")
    assert time.monotonic() - done >= 2.0 - 0.1 - 0.05, "not before the window after the last write"
    time.sleep(0.3)
    assert seen.names() == ["model_500.pt"]


# The stability rule itself, driven with explicit polls and times: nothing here depends on the scheduler.
SIZE_1, SIZE_2 = (1024, 1), (2048, 2)  # (size, mtime_ns) as the ticker reads them


def test_stable_means_enough_time_and_enough_polls() -> None:
    """The production numbers (a 2 s poll): first sighting, then the same value for STABLE_S seconds and at least
    STABLE_POLLS more polls; then the file is forgotten until it changes again."""
    assert (STABLE_S, STABLE_POLLS) == (10.0, 3)
    file, settling = Path("model_last.pt"), Settling()
    settling.changed(file)
    verdicts = [(t, settling.poll(file, SIZE_1, float(t))) for t in range(0, 14, 2)]
    assert verdicts == [(0, False), (2, False), (4, False), (6, False), (8, False), (10, True), (12, False)]
    assert settling.pending() == []


def test_time_alone_or_polls_alone_do_not_make_a_file_stable() -> None:
    file = Path("model_8.pt")
    late = Settling(stable_s=10.0, stable_polls=3)  # a ticker starved for a minute: one late look is not enough
    late.changed(file)
    assert [late.poll(file, SIZE_1, t) for t in (0.0, 60.0, 60.1, 60.2)] == [False, False, False, True]
    quick = Settling(stable_s=10.0, stable_polls=3)  # a fast poll: many looks within the window are not enough
    quick.changed(file)
    assert not any(quick.poll(file, SIZE_1, t / 10) for t in range(100))
    assert quick.poll(file, SIZE_1, 10.0)


def test_a_writer_pausing_longer_than_a_poll_is_not_reported_mid_write() -> None:
    """torch.save onto Drive's FUSE mount: writes 5 s apart (a stalled write(), a storage moved off the GPU)
    while the daemon polls every 2 s. The old rule (one unchanged poll) reported the file at its first pause."""

    def reports(settling: Settling) -> list[float]:
        file = Path("model_last.pt")
        settling.changed(file)
        reported = []
        for tick in range(1, 30):
            now = tick * 2.0
            written = min(now // 5 * 5, 30.0)  # the file grows at 0, 5, 10, ... 30 s
            if settling.poll(file, (int(written) + 1, int(written * 1e9)), now):
                reported.append(now)
        return reported

    assert reports(Settling()) == [40.0], "the first poll 10 s after the final size was first seen (30 s)"
    assert reports(Settling(stable_s=0.0, stable_polls=1))[0] == 4.0, "the old rule: mid-write"


def test_a_change_during_a_look_and_a_vanished_file() -> None:
    file = Path("model_2.pt")
    settling = Settling(stable_s=0.0, stable_polls=1)
    settling.changed(file)
    assert not settling.poll(file, SIZE_1, 0.0)
    [(_, seen)] = settling.pending()
    settling.changed(file)  # an event arrives while the ticker stats the file: that look decides nothing
    assert not settling.poll(file, SIZE_1, 1.0, seen)
    assert not settling.poll(file, SIZE_2, 2.0), "a first sighting again"
    assert settling.poll(file, SIZE_2, 3.0)
    settling.changed(file)
    assert not settling.poll(file, None, 4.0) and settling.pending() == [], "gone: dropped from the watch"
    assert not settling.poll(Path("never-changed.pt"), SIZE_1, 5.0)
    with pytest.raises(ValueError, match="stable_polls >= 1"):
        Settling(stable_polls=0)


def test_a_failing_inotify_falls_back_to_polling_and_says_so(
        watched: tuple[Path, Seen, list[Watcher]], monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """inotify limits reached (EMFILE): the watch still works, by polling, and the note names the cause."""
    folder, seen, started = watched

    class ExhaustedInotify(InotifyObserver):
        def start(self) -> None:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(watch, "_inotify_observer", ExhaustedInotify)
    notes: list[str] = []
    quick = Settling(stable_s=0.2, stable_polls=2)
    started.append(watcher := watch_dir(folder, seen, poll_interval_s=0.1, on_note=notes.append, settling=quick))
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
