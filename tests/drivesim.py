"""A model of Google Drive for tests: one view per simulated VM, a cloud, and late, reordered, per-file replication.

What it models (shared/DRIVE_FACTS.md, "Model of Drive"):

- every view is one VM's write-back cache of the same Drive; a change in it (a file created, rewritten or
  deleted, at any depth) reaches the cloud after an upload delay, and every other view after a download delay;
- each change draws its own delay, ``uniform(lo_s, hi_s) + size / bytes_per_s``: large files arrive later, and
  a small write made later (a manifest, a delete, a lease marker) can overtake a big one made earlier;
- per file the newest mtime wins, in the cloud and in each view (a delete counts as made when its view noticed
  it): a version that arrives after a newer one is dropped, and a view never loses a newer local write to an
  older download;
- a killed view (its VM died) loses every change it had not uploaded yet, and receives nothing more;
- a paused view (a frozen VM, its Drive client included) neither uploads nor downloads until resumed;
- DriveFS's upload state, on the views named in ``drivefs``: real ``user.*`` extended attributes, read by name
  as on Colab (f5guard/cloud/drivefs.py): a local write gets ``user.drive.uncommitted`` = "1" and
  ``user.drive.id`` = "local-N" when the view notices it, then "0" and a stable id when its upload lands (if the
  file is still that version); a download arrives with "0" and the stable id; the view's root has an id. A view
  not named there carries no attributes (a mount without evidence).

The replicator writes each file atomically at its destination (a temp in a staging folder on the same
filesystem, the source's mtime set on it, then a rename): a reader never sees a half-copied file from it.
Not modelled: empty directories (made as needed, never replicated or removed), symlinks, Drive's duplicate
names (``name (1).ext``), quota and transport errors. Stdlib only; one polling thread (``poll_s``).

    sim = DriveSim(tmp_path / "drive", ["A", "B"], upload=Delays(0.5, 2), download=Delays(0.5, 2),
                   drivefs=["A", "B"])
    with sim:                        # start() ... stop()
        (sim.view("A") / "x").write_text("hi")
        sim.wait_event(lambda e: e.kind == "downloaded" and e.view == "B" and e.path == "x")
        sim.wait_quiescent()
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import heapq
import itertools
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

Key = tuple[int, str, int]  # (mtime_ns, origin view, sequence): the total order "last writer wins" uses
UNCOMMITTED, ITEM_ID = "user.drive.uncommitted", "user.drive.id"  # DriveFS's, as f5guard/cloud/drivefs.py reads


def xattrs_work(folder: Path) -> bool:
    """Whether ``folder``'s file system keeps ``user.*`` extended attributes (ext4, tmpfs, xfs do)."""
    probe = folder / f".xattr-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        os.setxattr(probe, UNCOMMITTED, b"1")
        return os.getxattr(probe, UNCOMMITTED) == b"1"
    except (OSError, AttributeError):
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def stable_id(rel: str) -> str:
    """The cloud's id of an item: the same in every view, never ``local-``."""
    return "sim-" + hashlib.sha1(rel.encode(), usedforsecurity=False).hexdigest()[:16]


@dataclass(frozen=True)
class Delays:
    """How long one transfer takes: ``uniform(lo_s, hi_s) + size / bytes_per_s`` seconds."""

    lo_s: float
    hi_s: float
    bytes_per_s: float = float("inf")

    def sample(self, rng: random.Random, size: int) -> float:
        return rng.uniform(self.lo_s, self.hi_s) + size / self.bytes_per_s

    def most_s(self, size: int) -> float:
        """The longest a transfer of ``size`` bytes can take."""
        return self.hi_s + size / self.bytes_per_s


@dataclass(frozen=True)
class Event:
    """One step of replication, for assertions. ``t`` is time.monotonic(); ``kind`` is one of

    changed / deleted   a view noticed a local write / delete (queued for upload)
    uploaded            a change from ``origin`` became the cloud's version of ``path``
    superseded          an upload arrived after a newer version of ``path``: dropped (last writer wins)
    lost                a pending upload of a killed view: dropped
    downloaded          the cloud's version reached ``view``
    stale               a download not applied: ``view`` holds a newer version
    killed / paused / resumed / added   what happened to ``view``
    """

    t: float
    kind: str
    view: str
    path: str = ""
    op: str = ""  # "write" or "delete"
    origin: str = ""
    mtime_ns: int = 0
    size: int = 0


@dataclass(frozen=True)
class _Version:
    path: str
    key: Key
    data: bytes | None  # None: a deletion

    @property
    def op(self) -> str:
        return "delete" if self.data is None else "write"

    @property
    def size(self) -> int:
        return 0 if self.data is None else len(self.data)


@dataclass
class _Local:
    """What a view last held at a path: the version's key, and the stat that shows it is still that one."""

    key: Key
    stat: tuple[int, int, int] | None  # (mtime_ns, size, inode); None: deleted


@dataclass(order=True)
class _Transfer:
    due: float
    seq: int
    up: bool = field(compare=False)  # True: view -> cloud; False: cloud -> view
    view: str = field(compare=False)
    version: _Version = field(compare=False)


@dataclass
class _View:
    name: str
    root: Path
    known: dict[str, _Local] = field(default_factory=dict)
    alive: bool = True
    paused: bool = False
    drivefs: bool = False  # its files carry DriveFS's upload attributes


class DriveSim:
    """Replicates between views and a cloud folder from one polling thread; see the module docstring."""

    def __init__(self, root: Path, views: list[str], *, upload: Delays, download: Delays | None = None,
                 poll_s: float = 0.15, seed: int | None = None, drivefs: Iterable[str] = ()) -> None:  # fmt: skip
        self.root = Path(root)
        self.cloud = self.root / "cloud"
        self.upload = upload
        self.download = download or upload
        self.poll_s = poll_s
        self.log: list[Event] = []
        self._rng = random.Random(seed)  # noqa: S311  # delays, not secrets
        self._seq = itertools.count()
        self._lock = threading.RLock()  # held by the replicator for each pass; hold() borrows it
        self._views: dict[str, _View] = {}
        self._cloud: dict[str, _Version] = {}
        self._queue: list[_Transfer] = []
        self._held: list[_Transfer] = []  # due transfers of paused views
        self._paused = False
        self._listeners: list[Callable[[Event], None]] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_activity = time.monotonic()
        self._stage = self.root / ".stage"  # temps, on the views' filesystem so that rename is atomic
        for d in (self.cloud, self._stage):
            d.mkdir(parents=True, exist_ok=True)
        with_attributes = set(drivefs)
        if with_attributes and not xattrs_work(self._stage):
            raise OSError(f"{self.root}: this file system keeps no user.* extended attributes (DriveFS's)")
        for name in views:
            self.add_view(name, drivefs=name in with_attributes)

    # -- public ----------------------------------------------------------------------------------------------
    def view(self, name: str) -> Path:
        return self._views[name].root

    @property
    def views(self) -> list[str]:
        return list(self._views)

    def start(self) -> DriveSim:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="drivesim", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def __enter__(self) -> DriveSim:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def add_view(self, name: str, *, drivefs: bool = False) -> Path:
        """A VM that mounts the Drive: it gets every file the cloud holds, each after a download delay; its files
        carry DriveFS's upload attributes when ``drivefs``."""
        with self._lock:
            if name in self._views:
                raise ValueError(f"view {name} exists")
            root = self.root / "views" / name
            root.mkdir(parents=True, exist_ok=True)
            if drivefs:
                os.setxattr(root, ITEM_ID, stable_id("").encode())
            self._views[name] = _View(name, root, drivefs=drivefs)
            now = time.monotonic()
            for version in self._cloud.values():
                if version.data is not None:
                    self._push(_Transfer(now + self.download.sample(self._rng, version.size), next(self._seq),
                                         False, name, version))  # fmt: skip
            self._emit("added", name)
            return root

    def kill_view(self, name: str) -> int:
        """The VM died: its pending uploads are lost, and nothing reaches it any more. Returns how many were lost."""
        with self._lock:
            view = self._views[name]
            view.alive = False
            lost = [t for t in self._queue + self._held if t.up and t.view == name]
            self._queue = [t for t in self._queue if t.view != name]
            self._held = [t for t in self._held if t.view != name]
            heapq.heapify(self._queue)
            for t in sorted(lost):
                v = t.version
                self._emit("lost", name, v.path, v.op, origin=name, mtime_ns=v.key[0], size=v.size)
            self._emit("killed", name)
            return len(lost)

    def pause(self, name: str | None = None) -> None:
        """Freeze one view (no scan, no upload from it, no download to it), or all replication."""
        with self._lock:
            if name is None:
                self._paused = True
            else:
                self._views[name].paused = True
            self._emit("paused", name or "*")

    def resume(self, name: str | None = None) -> None:
        """Undo pause(); transfers that fell due meanwhile are done, in their order, before this returns (a VM
        thawed right after finds its view as current as the cloud)."""
        with self._lock:
            if name is None:
                self._paused = False
            else:
                self._views[name].paused = False
            now = time.monotonic()
            keep = []
            for t in self._held:
                if self._views[t.view].paused:
                    keep.append(t)
                else:
                    t.due = min(t.due, now)
                    self._push(t)
            self._held = keep
            self._emit("resumed", name or "*")
            if not self._paused:
                self._deliver(now)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the replicator between two passes: read the cloud or the views as one consistent snapshot."""
        with self._lock:
            yield

    def listen(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` for each new event, in the replicator thread with its lock held (so a
        callback may kill_view or pause before anything else moves). Keep it quick."""
        with self._lock:
            self._listeners.append(callback)

    def events(self, kind: str | None = None, view: str | None = None, path: str | None = None,
               since: int = 0) -> list[Event]:  # fmt: skip
        """Logged events from index ``since``, filtered; ``path`` is an fnmatch pattern."""
        with self._lock:
            found = self.log[since:]
        return [e for e in found if (kind is None or e.kind == kind) and (view is None or e.view == view)
                and (path is None or fnmatch.fnmatch(e.path, path))]  # fmt: skip

    def wait_event(self, match: Callable[[Event], bool], timeout: float = 30.0, since: int = 0) -> Event:
        """The first logged event from index ``since`` that ``match``es; waits for it up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = next((e for e in self.log[since:] if match(e)), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"no matching drivesim event within {timeout}s")
            time.sleep(0.02)

    def pending(self) -> int:
        """Transfers not done yet (queued or held by a pause)."""
        with self._lock:
            return len(self._queue) + len(self._held)

    def uploading(self, view: str, pattern: str = "*") -> list[str]:
        """Files ``view`` wrote that have not reached the cloud yet (fnmatch ``pattern``; deletes aside): what
        that VM would lose if it died now, and what its Drive cache must hold meanwhile."""
        with self._lock:
            newest: dict[str, _Version] = {}
            for t in self._queue + self._held:
                if (
                    t.up
                    and t.view == view
                    and (t.version.path not in newest or t.version.key > newest[t.version.path].key)
                ):
                    newest[t.version.path] = t.version
        return sorted(p for p, v in newest.items() if v.data is not None and fnmatch.fnmatch(p, pattern))

    def wait_quiescent(self, timeout: float = 60.0, settle_s: float | None = None) -> None:
        """Until nothing is in flight and no view changed for ``settle_s`` (default: three polls)."""
        settle = 3 * self.poll_s if settle_s is None else settle_s
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                idle = not self._queue and not self._held and time.monotonic() - self._last_activity >= settle
            if idle:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"drivesim still busy after {timeout}s ({self.pending()} transfers pending)")
            time.sleep(0.05)

    # -- the replicator --------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            with self._lock:
                if not self._paused:
                    for view in list(self._views.values()):
                        if view.alive and not view.paused:
                            self._scan(view)
                    self._deliver(time.monotonic())
            self._stopping.wait(max(0.0, self.poll_s - (time.monotonic() - started)))

    def _push(self, transfer: _Transfer) -> None:
        heapq.heappush(self._queue, transfer)

    def _emit(self, kind: str, view: str, path: str = "", op: str = "", *, origin: str = "", mtime_ns: int = 0,
              size: int = 0) -> None:  # fmt: skip
        event = Event(time.monotonic(), kind, view, path, op, origin, mtime_ns, size)
        self.log.append(event)
        if kind not in ("killed", "paused", "resumed", "added", "stale"):
            self._last_activity = event.t
        for listener in self._listeners:
            listener(event)

    def _scan(self, view: _View) -> None:
        seen: set[str] = set()
        for dirpath, _dirs, files in os.walk(view.root):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), view.root)
                seen.add(rel)
                self._observe(view, rel)
        for rel, local in list(view.known.items()):
            if local.stat is not None and rel not in seen:
                self._observe(view, rel)

    def _observe(self, view: _View, rel: str) -> None:
        """Notice a local write or delete at ``rel`` that the view has not reported yet, and queue its upload."""
        path = view.root / rel
        local = view.known.get(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if local is not None and local.stat is not None:
                key = (time.time_ns(), view.name, next(self._seq))
                view.known[rel] = _Local(key, None)
                self._queue_upload(view, _Version(rel, key, None))
                self._emit("deleted", view.name, rel, "delete", origin=view.name, mtime_ns=key[0])
            return
        if not os.path.isfile(path) or os.path.islink(path):
            return
        stat = (st.st_mtime_ns, st.st_size, st.st_ino)
        if local is not None and local.stat == stat:
            return
        data = _read_stable(path, st)
        if data is None:
            return  # being written: look again at the next pass
        key = (st.st_mtime_ns, view.name, next(self._seq))
        view.known[rel] = _Local(key, stat)
        if view.drivefs:  # DriveFS has the new version in its cache, not in the cloud
            _mark(path, stat, uncommitted=True, item=f"local-{key[2]}")
        self._queue_upload(view, _Version(rel, key, data))
        self._emit("changed", view.name, rel, "write", origin=view.name, mtime_ns=key[0], size=len(data))

    def _queue_upload(self, view: _View, version: _Version) -> None:
        due = time.monotonic() + self.upload.sample(self._rng, version.size)
        self._push(_Transfer(due, next(self._seq), True, view.name, version))

    def _deliver(self, now: float) -> None:
        while self._queue and self._queue[0].due <= now:
            transfer = heapq.heappop(self._queue)
            view = self._views[transfer.view]
            if not view.alive:
                continue
            if view.paused:
                self._held.append(transfer)
                continue
            if transfer.up:
                self._to_cloud(transfer.version)
            else:
                self._to_view(view, transfer.version)

    def _to_cloud(self, version: _Version) -> None:
        origin = version.key[1]
        current = self._cloud.get(version.path)
        if current is not None and current.key >= version.key:
            self._emit("superseded", "cloud", version.path, version.op, origin=origin, mtime_ns=version.key[0],
                       size=version.size)  # fmt: skip
            return
        self._cloud[version.path] = version
        self._apply(self.cloud / version.path, version)
        writer = self._views.get(origin)
        mine = writer.known.get(version.path) if writer is not None else None
        if writer is not None and writer.drivefs and mine is not None and mine.key == version.key and mine.stat:
            _mark(writer.root / version.path, mine.stat, uncommitted=False, item=stable_id(version.path))
        self._emit("uploaded", "cloud", version.path, version.op, origin=origin, mtime_ns=version.key[0],
                   size=version.size)  # fmt: skip
        now = time.monotonic()
        for other in self._views.values():
            if other.alive and other.name != origin:
                due = now + self.download.sample(self._rng, version.size)
                self._push(_Transfer(due, next(self._seq), False, other.name, version))

    def _to_view(self, view: _View, version: _Version) -> None:
        self._observe(view, version.path)  # a local change not scanned yet competes too
        local = view.known.get(version.path)
        if local is not None and local.key >= version.key:
            self._emit("stale", view.name, version.path, version.op, origin=version.key[1],
                       mtime_ns=version.key[0], size=version.size)  # fmt: skip
            return
        stat = self._apply(view.root / version.path, version, committed=view.drivefs)
        view.known[version.path] = _Local(version.key, stat)
        self._emit("downloaded", view.name, version.path, version.op, origin=version.key[1],
                   mtime_ns=version.key[0], size=version.size)  # fmt: skip

    def _apply(self, target: Path, version: _Version, *, committed: bool = False) -> tuple[int, int, int] | None:
        """Write (temp, mtime, rename) or delete ``target``; the stat of what is there now. ``committed``: the
        file arrives with DriveFS's "in the cloud" attributes (set on the temp: no later change to its ctime)."""
        if version.data is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._stage / f"tmp-{next(self._seq)}"
        tmp.write_bytes(version.data)
        if committed:
            os.setxattr(tmp, UNCOMMITTED, b"0")
            os.setxattr(tmp, ITEM_ID, stable_id(version.path).encode())
        os.utime(tmp, ns=(version.key[0], version.key[0]))
        st = os.stat(tmp)
        os.replace(tmp, target)
        return (st.st_mtime_ns, st.st_size, st.st_ino)


def _mark(path: Path, stat: tuple[int, int, int], *, uncommitted: bool, item: str) -> None:
    """Set DriveFS's attributes on ``path`` if it is still the version ``stat`` describes (else leave it: a
    newer local write has its own)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if (st.st_mtime_ns, st.st_size, st.st_ino) != stat:
            return
        os.setxattr(fd, UNCOMMITTED, b"1" if uncommitted else b"0")
        os.setxattr(fd, ITEM_ID, item.encode())
    except OSError:
        return
    finally:
        os.close(fd)


def _read_stable(path: Path, st: os.stat_result) -> bytes | None:
    """The file's bytes if nobody changed it while they were read, else None."""
    try:
        with open(path, "rb") as handle:
            before = os.fstat(handle.fileno())
            data = handle.read()
            after = os.fstat(handle.fileno())
        now = os.lstat(path)
    except OSError:
        return None
    same = {(s.st_ino, s.st_size, s.st_mtime_ns) for s in (st, before, after, now)}
    return data if len(same) == 1 and len(data) == st.st_size else None


__all__ = ["ITEM_ID", "UNCOMMITTED", "Delays", "DriveSim", "Event", "stable_id", "xattrs_work"]
