"""Verified checkpoint sync from the local checkpoint dir to home, from one low-priority thread.

The worker decides *when*: it wakes on watcher events, the trainer's requests and a periodic rescan, picks
the newest valid local checkpoint, retries with backoff, and keeps the status. *How* a checkpoint becomes
durable on home (copy, verify, rename, manifest, retention) is ``publish.py``; whether it reached the cloud
is ``uploads.py``. Pacing: while this VM's previous checkpoint is still uploading, no new one is pushed into
the mount (the trainer keeps saving locally; the newest local one goes once the upload is done), except the
final one at a graceful stop or the end of training, when home has room for it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from f5guard.checkpoints.copying import lower_io_priority
from f5guard.checkpoints.durable import DurableCheckpoint, Log, list_durable, no_log
from f5guard.checkpoints.finite import nonfinite
from f5guard.checkpoints.inspect import CheckpointInfo, CheckpointInvalid, scan_dir
from f5guard.checkpoints.publish import Attempt, Fenced, Outcome, Publisher
from f5guard.checkpoints.watch import Watcher, watch_dir
from f5guard.cloud.evidence import Store
from f5guard.fsutil import make_dirs, missing_root
from f5guard.state import CloudNote

RESCAN_S = 60.0  # look now and then even without events (a missed event, a FUSE dir)
FIRST_RETRY_S = 1.0  # after a failed copy; doubles up to retry_max_s
TORN_RETRY_S = 1.0
NO_SPACE_RETRY_S = 60.0


@dataclass(frozen=True)
class SyncStatus:
    """What status shows: the newest durable checkpoint, and why a newer one is not there yet."""

    durable: DurableCheckpoint | None
    syncing: str | None  # the local file being copied now
    last_error: str | None
    warning: str | None
    attempts: int  # tries for the checkpoint now pending; 0 once it is durable
    last_sync_s: float | None  # duration of the last successful sync
    bytes_per_s: float | None
    fenced: bool = False  # the lease check failed: this sync writes nothing more
    cloud: CloudNote | None = None  # what reached the cloud (uploads.py); None before the first look


_LINGERING: weakref.WeakSet[CheckpointSync] = weakref.WeakSet()  # training over, uploads still watched


def lingering() -> int:
    """How many syncs still record their VM's uploads after their training ended (``linger``): a daemon that
    exits once its runs are done (``run --until-done``) waits for them, so the manifests say what reached the
    cloud."""
    return sum(1 for sync in list(_LINGERING) if sync.lingering)


class CheckpointSync:
    """Keeps home's newest durable checkpoint up to date with the local dir, from one low-priority thread."""

    def __init__(self, local_dir: Path, home_ckpt_dir: Path, *, epoch: int, keep: int = 1,
                 fence: Callable[[], None] | None = None, polling: bool = False, retry_max_s: float = 300.0,
                 log: Log | None = None, tag: str = "", retention_delay_s: float = 0.0,
                 may_delete: Callable[[], bool] = lambda: True, store: Store | None = None,
                 poll_s: float = 5.0) -> None:  # fmt: skip
        self.local_dir, self.home = Path(local_dir), Path(home_ckpt_dir)
        self._poll_s = poll_s  # how often an upload in flight is looked at
        self._polling = polling
        self._retry_max_s = retry_max_s
        self._log: Log = log or no_log
        self._publisher = Publisher(self.home, epoch=epoch, keep=keep, fence=fence, log=self._log, tag=tag,
                                    retention_delay_s=retention_delay_s, may_delete=may_delete,
                                    store=store)  # fmt: skip
        self._cond = threading.Condition()  # guards the fields below; flush waits on it
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: Watcher | None = None
        self._prepared = False
        self._flushers = 0
        self._passes = 0
        self._outcome: Outcome | None = None
        self._durables: list[DurableCheckpoint] = []
        self._syncing: str | None = None
        self._last_error: str | None = None
        self._warning: str | None = None
        self._refused: set[str] = set()  # non-finite checkpoints already logged
        self._nonfinite: str | None = None  # the newest local checkpoint is not finite: why it stays here
        self._attempts = 0
        self._torn_in_row = 0
        self._last_sync_s: float | None = None
        self._bytes_per_s: float | None = None
        self._fenced = False
        self._cloud: CloudNote | None = None
        self._held_back: int | None = None  # the local update waiting for an upload (pacing)
        self._final = False  # a flush: the final checkpoint goes even while another uploads
        self._lingering = False  # training is over: only watch the uploads until the cloud has them

    # -- public ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the watcher and the one worker thread (which first removes temps a killed sync left)."""
        if self._thread is not None:
            return
        make_dirs(self.local_dir)
        self._watcher = watch_dir(self.local_dir, lambda _path: self.request(), polling=self._polling,
                                  on_note=self._note_fallback)  # fmt: skip
        self._log("sync.watch", kind=self._watcher.kind, path=str(self.local_dir))
        self._wake.set()
        self._thread = threading.Thread(target=self._run, name="f5guard-sync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """A checkpoint may be complete now (watcher events, the trainer's `checkpoint` progress events)."""
        self._wake.set()

    def flush(self, timeout_s: float) -> bool:
        """Make the newest valid local checkpoint durable now and wait; True if home then holds it (or newer).

        Also True when there is no local checkpoint at all (nothing to lose). Without a running worker
        (never started, or stopped) the sync runs in the calling thread.
        """
        deadline = time.monotonic() + timeout_s
        target = self._candidate()
        if target is None:
            return True
        self._final = True  # the final checkpoint is what the next runtime resumes from: no pacing for it
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._wait_for_worker(target, thread, deadline)
        else:
            while self._pass(in_worker=False) not in (Outcome.FENCED, Outcome.NO_SPACE):
                remaining = deadline - time.monotonic()
                if self._publisher.covered(target, self._durables) or remaining <= 0 or missing_root(self.home):
                    break
                time.sleep(min(0.5, remaining))
        self._final = False
        with self._cond:
            return self._publisher.covered(target, self._durables)

    def linger(self) -> None:
        """Training is over but the daemon stays: stop watching the local dir, keep recording this VM's uploads
        until the cloud has them all (their manifests say so for the next runtime), then end the worker."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        self._lingering = True
        _LINGERING.add(self)
        self._wake.set()

    @property
    def lingering(self) -> bool:
        """Training is over and the worker still waits for this VM's uploads to reach the cloud."""
        thread = self._thread
        return self._lingering and thread is not None and thread.is_alive()

    def stop(self) -> None:
        """Stop watching and syncing; a copy in flight is abandoned and its temp removed."""
        self._stopping.set()
        self._wake.set()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def status(self) -> SyncStatus:
        with self._cond:
            newest = self._durables[-1] if self._durables else None
            warning = self._warning or self._nonfinite
            return SyncStatus(newest, self._syncing, self._last_error, warning, self._attempts,
                              self._last_sync_s, self._bytes_per_s, self._fenced, self._cloud)  # fmt: skip

    # -- the worker ------------------------------------------------------------------------------------------
    def _wait_for_worker(self, target: CheckpointInfo, thread: threading.Thread, deadline: float) -> None:
        with self._cond:
            self._flushers += 1
            passes = self._passes
        self._wake.set()
        try:
            with self._cond:
                while not self._publisher.covered(target, self._durables) and not self._fenced and thread.is_alive():
                    if self._passes > passes and self._outcome is Outcome.NO_SPACE:
                        return  # waiting will not make room; the warning says what to do
                    if self._passes > passes and missing_root(self.home) is not None:
                        return  # home is gone (Drive unmounted): nothing reaches it before it is back
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self._cond.wait(min(remaining, 1.0))
        finally:
            with self._cond:
                self._flushers -= 1

    def _run(self) -> None:
        self._log("sync.io_priority", note=lower_io_priority())
        delay: float | None = 0.0
        backoff = FIRST_RETRY_S
        while not self._stopping.is_set():
            self._wait(delay)
            if self._stopping.is_set():
                break
            outcome = self._pass(in_worker=True)
            if outcome is Outcome.FENCED:
                break
            uploading = self._publisher.uploads.pending()
            if self._lingering and not uploading and outcome is not Outcome.FAILED:
                break  # every upload of this VM is in the cloud with its record: nothing left to watch
            if outcome is Outcome.FAILED:
                delay, backoff = min(backoff, self._retry_max_s), min(backoff * 2, self._retry_max_s)
                continue
            backoff = FIRST_RETRY_S
            retry = {Outcome.TORN: TORN_RETRY_S, Outcome.NO_SPACE: NO_SPACE_RETRY_S}.get(outcome)
            delay = None if retry is None else min(retry, self._retry_max_s)
            if uploading:  # an upload in flight: look at it again soon
                delay = self._poll_s if delay is None else min(delay, self._poll_s)
        with self._cond:
            self._cond.notify_all()

    def _wait(self, delay: float | None) -> None:
        """Sleep until a request (or the periodic rescan); during a retry delay only a flush cuts it short."""
        deadline = None if delay is None else time.monotonic() + delay
        while not self._stopping.is_set():
            remaining = RESCAN_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return
            if not self._wake.wait(min(remaining, 0.5) if self._flushers else remaining):
                if deadline is None:
                    return
                continue
            self._wake.clear()
            if deadline is None or self._flushers:
                return

    def _pass(self, *, in_worker: bool) -> Outcome:
        """One look: sync the newest local checkpoint if home lacks it. Never raises."""
        try:
            if not self._prepared:
                self._prepare()
            outcome = self._sync_newest(in_worker)
        except Fenced as err:
            outcome = Outcome.FENCED
            error = f"stopped syncing to {self.home}: the lease check failed ({err})"
            with self._cond:
                self._fenced, self._last_error = True, error
            self._log("sync.fenced", error=str(err))
        except OSError as err:  # listing home, free space, mkdir: a Drive that is gone for a moment
            outcome = self._failed(f"could not read {self.home} while syncing: {err.strerror or err}")
        with self._cond:
            self._passes += 1
            self._outcome = outcome
            self._cond.notify_all()
        return outcome

    def _note_fallback(self, note: str) -> None:
        self._log("sync.watch_fallback", note=note)

    def _prepare(self) -> None:
        """Once: remove temps a killed sync left on home; trim to ``keep`` (e.g. after keep was lowered)."""
        durables = self._publisher.prepare_home()
        with self._cond:
            self._durables = durables
        self._prepared = True

    def _candidate(self) -> CheckpointInfo | None:
        """The newest valid local training checkpoint whose weights are finite; numbered files win ties (they are
        never rewritten). A non-finite one is never published (finite.py): status says which and why."""
        valid = scan_dir(self.local_dir).valid
        training = [c for c in valid if c.kind != "pretrained" and c.path.suffix == ".pt"]
        found, refused = None, None
        for candidate in sorted(training, key=lambda c: (c.update, c.kind == "numbered", c.name), reverse=True):
            try:
                reason = nonfinite(candidate.path)
            except CheckpointInvalid:
                continue  # being rewritten, or gone: the next look decides
            if reason is None:
                found = candidate
                break
            refused = refused or f"{reason}: not published to home"
            if reason not in self._refused:
                self._refused.add(reason)
                self._log("sync.nonfinite", file=candidate.name, update=candidate.update, reason=reason)
        with self._cond:
            self._nonfinite = refused
        return found

    def _sync_newest(self, in_worker: bool) -> Outcome:
        candidate = None if self._lingering else self._candidate()
        durables = self._look_at_home()
        if candidate is None or self._publisher.covered(candidate, durables):
            with self._cond:
                self._attempts = self._torn_in_row = 0
            self._hold_back(None)
            return Outcome.NOTHING
        busy = self._publisher.uploads.busy()
        if busy is not None and not self._final:
            if self._held_back != candidate.update:
                self._log("sync.held_back", file=candidate.name, update=candidate.update, uploading=busy.update)
            self._hold_back(candidate.update)
            return Outcome.UPLOADING
        self._hold_back(None)
        try:
            attempt = self._publisher.publish(candidate, durables,
                                              stopping=lambda: in_worker and self._stopping.is_set(),
                                              on_copy=self._copying, on_durable=self._published)  # fmt: skip
        finally:
            with self._cond:
                self._syncing = None
        return self._settle(candidate, attempt)

    def _look_at_home(self) -> list[DurableCheckpoint]:
        """List home, record what reached the cloud, apply the retention that allows (before any new push: the
        mount then holds the one kept and the one uploading, no more), and refresh the status."""
        uploads = self._publisher.uploads
        durables = list_durable(self.home)
        if uploads.refresh(durables):
            durables = list_durable(self.home)
        if self._publisher.trim_due(durables):
            durables = list_durable(self.home)
            uploads.refresh(durables)
        with self._cond:
            self._durables = durables
            self._cloud = uploads.note(self._held_back)
        return durables

    def _hold_back(self, update: int | None) -> None:
        with self._cond:
            self._held_back = update
            if self._cloud is not None:
                self._cloud = {**self._cloud, "held_back": update}

    def _settle(self, candidate: CheckpointInfo, attempt: Attempt) -> Outcome:
        """Fold how one try ended into the status; the outcome then picks the worker's next wait."""
        if attempt.outcome is Outcome.DONE:
            self._look_at_home()
        elif attempt.outcome is Outcome.NO_SPACE:
            with self._cond:
                self._warning = attempt.message
        elif attempt.outcome is Outcome.TORN:
            self._torn(candidate)
        elif attempt.outcome is Outcome.FAILED:
            self._failed(attempt.message or "the copy to home failed")
        return attempt.outcome

    def _copying(self, candidate: CheckpointInfo) -> None:
        with self._cond:
            self._syncing = candidate.name
            self._attempts += 1

    def _published(self, durable: DurableCheckpoint, elapsed: float) -> None:
        rate = durable.size / elapsed if elapsed > 0 else None
        with self._cond:
            self._last_error = self._warning = None
            self._attempts = self._torn_in_row = 0
            self._last_sync_s, self._bytes_per_s = elapsed, rate

    def _torn(self, candidate: CheckpointInfo) -> None:
        with self._cond:
            self._torn_in_row += 1
            torn = self._torn_in_row
            if torn >= 3:
                self._warning = (f"{candidate.name} was rewritten during each of the last {torn} copies "
                                 "to home; a numbered checkpoint (save_per_updates) is never rewritten "
                                 "and syncs cleanly")  # fmt: skip
        self._log("sync.torn", file=candidate.name, update=candidate.update, in_a_row=torn)

    def _failed(self, message: str) -> Outcome:
        with self._cond:
            self._last_error = message
        self._log("sync.error", error=message)
        return Outcome.FAILED
