"""Simulated Colab VMs for the lagging-home tests: a real f5guard daemon per VM, a torch-free trainer, observers.

A ``Runtime`` is one VM: its own work dir, its own Drive view (``tests.drivesim``) as home, its own config,
boot id (``F5GUARD_BOOT_ID``, which f5guard reads in ``machine.boot_id``) and, where the machine allows it,
its own pid namespace, mount namespace (a private /proc) and hostname: ``unshare --pid --fork --mount-proc
--uts`` runs a tiny init (pid 1 inside, reaps orphans as docker-init does on Colab), and every command of the
VM (``f5guard start``/``stop``/``status``) is run inside it with ``nsenter``. A daemon ``start`` detaches is
re-parented to that init, so killing the init (SIGKILL from outside) kills the whole VM at once.

How a test learns the pids: the pidfile and the claims on home hold pids *inside* the VM;
``Runtime.processes()`` lists the VM's processes as host ``psutil.Process`` objects (same pid-namespace inode),
and ``Runtime.host_pid(ns_pid)`` maps one pid (the ``NSpid`` line of /proc/<pid>/status). Without ``unshare``
(not root, or a sandbox that forbids namespaces) VMs are plain process trees tagged by an environment variable;
they then share the hostname, which f5guard treats as "the same machine" (noted in the report).

The trainer is a stdlib script standing in for F5-TTS (``mode = "command"``): it resumes from ``model_last.pt``
like F5-TTS, waits at f5guard's start gate when its stage is ``gated`` ($F5GUARD_GATE), prints a tqdm-like bar,
rewrites ``model_last.pt`` in place every ``save_every`` updates as a torch.save-shaped zip (``archive/data.pkl``
with model/optimizer/EMA/scheduler dicts and ``update``; a padding entry gives it a size) that f5guard's
torch-free inspector accepts, and logs ``start``/``tick`` events (wall clock) to a file outside every view, from
which double training is measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import hashlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.drivesim import DriveSim

RUN = "voice"
_VM_TAG = "F5GUARD_TEST_VM"

_INIT = r"""
import os, socket, sys, time
socket.sethostname(sys.argv[1])
open(sys.argv[2], "w").write(str(os.getpid()))
while True:  # pid 1 of the VM: reap every orphan (the detached daemon ends up here)
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.1)
"""

TRAINER = r'''
"""A torch-free F5-TTS stand-in: resume from model_last.pt, tick, save in place every N updates; optionally
finish at update TOTAL (saving it, exit 0) or crash at update CRASH_AT (exit 1, a traceback's last line)."""
import io, json, os, pickle, sys, time, zipfile

ckpts, events, runtime = sys.argv[1], sys.argv[2], sys.argv[3]
step_s, save_every, size = float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
total = int(sys.argv[7]) if len(sys.argv) > 7 else 0  # 0: train forever
crash_at = int(sys.argv[8]) if len(sys.argv) > 8 else 0  # 0: never
attempt = os.urandom(4).hex()
os.makedirs(ckpts, exist_ok=True)
log = open(events, "a", buffering=1)


def emit(ev, **fields):
    log.write(json.dumps({"t": time.time(), "rt": runtime, "attempt": attempt, "ev": ev, **fields}) + "\n")


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")


def load(path):
    with zipfile.ZipFile(path) as archive:
        return _NoGlobals(io.BytesIO(archive.read("archive/data.pkl"))).load()


def save(path, update):
    nonce = os.urandom(8).hex()  # two runtimes saving the same update never write the same bytes
    doc = {
        "model_state_dict": {"w": nonce}, "optimizer_state_dict": {"state": {}, "param_groups": []},
        "ema_model_state_dict": {"step": update}, "scheduler_state_dict": {"last_epoch": update},
        "update": update, "writer": runtime + "/" + attempt,
    }
    with open(path, "wb") as handle:  # in place, as F5-TTS's accelerator.save does
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("archive/data.pkl", pickle.dumps(doc, protocol=2))
            archive.writestr("archive/version", b"3\n")
            archive.writestr("archive/data/pad", bytes(max(0, size - 512)))


last = os.path.join(ckpts, "model_last.pt")
update, source = 0, None
if os.path.exists(last):  # F5-TTS always loads model_last.pt when it exists
    update, source = int(load(last)["update"]), "model_last.pt"
emit("start", u=update, source=source, pid=os.getpid())
gate = os.environ.get("F5GUARD_GATE")  # a gated command (f5guard.trainevents.Gate): loaded, now wait to train
if gate:
    emit("ready", u=update)
    while not os.path.exists(gate):
        time.sleep(0.05)
    emit("gate_open", u=update)
while True:
    time.sleep(step_s)
    update += 1
    emit("tick", u=update)
    print(f"Epoch 1/1:  0%|  | {update}/1000000 [00:01<00:10, {1 / step_s:.2f}update/s, loss=0.5, update={update}]",
          flush=True)
    if crash_at and update == crash_at:
        print("RuntimeError: the stand-in trainer's planned crash", flush=True)
        sys.exit(1)
    if update % save_every == 0 or update == total:
        save(last, update)
        print(f"Saved last checkpoint at update {update}", flush=True)
    if update == total:
        emit("finished", u=update)
        break
'''


def write_checkpoint(path: Path, update: int, size: int = 4096) -> Path:
    """An F5-TTS-shaped checkpoint without torch, as the trainer stand-in writes it (``TRAINER``'s ``save``)."""
    doc = {
        "model_state_dict": {"w": os.urandom(8).hex()},
        "optimizer_state_dict": {"state": {}, "param_groups": []},
        "ema_model_state_dict": {"step": update},
        "scheduler_state_dict": {"last_epoch": update},
        "update": update,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(doc, protocol=2))
        archive.writestr("archive/version", b"3\n")
        archive.writestr("archive/data/pad", bytes(max(0, size - 512)))
    return path


@functools.cache
def namespaces_work() -> bool:
    """True when ``unshare --pid --fork --mount-proc --uts`` can make a VM here (root, no seccomp veto);
    ``F5GUARD_DRIVE_NO_NAMESPACES=1`` forces the plain-process fallback (to test it where unshare works)."""
    if os.environ.get("F5GUARD_DRIVE_NO_NAMESPACES") == "1":
        return False
    try:
        probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--uts", "true"],
                               capture_output=True, timeout=20, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


@dataclass(frozen=True)
class Lease:
    """The ``[lease]`` table every runtime of a scenario uses (docs/config.md, docs/reliability.md)."""

    duration_s: float
    heartbeat_s: float
    takeover_slack_s: float
    epoch_poll_s: float
    settle_s: float  # a claim stays alone on home this long before training: above Drive's propagation delay
    arrival_timeout_s: float  # how long a checkpoint that home's records name is waited for
    retention_delay_s: float  # an older durable checkpoint goes only once a newer one is this old

    def toml(self) -> str:
        keys = dataclasses.asdict(self)
        return "[lease]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())


@dataclass(frozen=True)
class Training:
    """The trainer stand-in's pace and checkpoint size."""

    step_s: float
    save_every: int
    ckpt_bytes: int
    keep_durable: int = 1
    total: int = 0  # finish (exit 0) at this update; 0: train forever
    crash_at: int = 0  # crash (exit 1) on reaching this update; 0: never


def train_stage(trainer_dir: Path, ckpts: Path, events: Path, name: str, training: Training) -> str:
    """The ``[[runs.stages]]`` table of a train stage (``mode = "command"``) running the stand-in ``TRAINER``,
    written once into ``trainer_dir``."""
    trainer = trainer_dir / "trainer.py"
    if not trainer.exists():
        trainer.write_text(TRAINER)
    argv = ["{python}", str(trainer), str(ckpts), str(events), name, str(training.step_s), str(training.save_every),
            str(training.ckpt_bytes), str(training.total), str(training.crash_at)]  # fmt: skip
    return textwrap.dedent(f"""
        [[runs.stages]]
        name = "train"
        type = "train"
        mode = "command"
        checkpoint_dir = "{ckpts}"
        keep_durable = {training.keep_durable}
        hang_minutes = 0
        stop_grace_s = 2
        command = {json.dumps(argv)}
        """)


@dataclass
class Runtime:
    """One simulated VM running one f5guard daemon against its own Drive view."""

    name: str
    root: Path
    home: Path
    events: Path  # the trainer's event log, outside every view
    namespaced: bool
    config: Path = field(init=False)
    work: Path = field(init=False)
    ckpts: Path = field(init=False)
    hostname: str = field(init=False)
    boot_id: str = field(init=False)
    env: dict[str, str] = field(init=False)
    _vm: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _init_pid: int | None = field(default=None, init=False, repr=False)
    _ns_inode: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = self.root / "f5guard.toml"
        self.work = self.root / "work"
        self.ckpts = self.work / "user-ckpts"
        self.hostname = f"vm-{self.name.lower()}"
        self.boot_id = f"drivesim-{self.name}-{uuid.uuid4()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("F5GUARD_", "NOTIFY_SOCKET"))}
        self.env = {**env, "F5GUARD_BOOT_ID": self.boot_id, _VM_TAG: f"{self.root}"}

    # -- set up ----------------------------------------------------------------------------------------------
    def write_config(self, lease: Lease, training: Training, store: dict[str, Any] | None = None) -> None:
        """``store``: the ``[store]`` table (docs/config.md), omitted when None (an f5guard that predates it)."""
        tables = lease.toml()
        if store:
            tables += "[store]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in store.items())
        stage = train_stage(self.root.parent, self.ckpts, self.events, self.name, training)
        self.config.write_text(f'home = "{self.home}"\nwork = "{self.work}"\n{tables}[[runs]]\nname = "{RUN}"\n{stage}')

    def boot(self) -> None:
        """Start the VM: a pid namespace with its own /proc and hostname, whose pid 1 reaps orphans."""
        if not self.namespaced or self._vm is not None:
            return
        ready = self.root / "vm.ready"
        with open(self.root / "vm.out", "wb") as out:  # unshare's own complaints when the VM is killed
            self._vm = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--uts", sys.executable,
                                         "-c", _INIT, self.hostname, str(ready)], cwd=self.root, stdout=out,
                                        stderr=out)  # fmt: skip
        deadline = time.monotonic() + 20
        while not ready.exists() or not ready.read_text():
            if time.monotonic() > deadline or self._vm.poll() is not None:
                raise RuntimeError(f"VM {self.name} did not boot (unshare exited {self._vm.poll()})")
            time.sleep(0.02)
        init = psutil.Process(self._vm.pid).children()[0]
        self._init_pid = init.pid
        self._ns_inode = os.stat(f"/proc/{init.pid}/ns/pid").st_ino

    # -- commands inside the VM ------------------------------------------------------------------------------
    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        if self.namespaced:
            assert self._init_pid is not None, "boot() first"
            argv = ["nsenter", "--target", str(self._init_pid), "--pid", "--mount", "--uts", f"--wd={self.root}",
                    "--", *argv]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.root, env=self.env)

    def spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        """A long-running command inside the VM (``f5guard run --foreground``), its output to ``log``."""
        if self.namespaced:
            assert self._init_pid is not None, "boot() first"
            argv = ["nsenter", "--target", str(self._init_pid), "--pid", "--mount", "--uts", f"--wd={self.root}",
                    "--", *argv]  # fmt: skip
        with open(log, "wb") as out:
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.root, env=self.env)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-m", "f5guard", *args, "--config", str(self.config)], timeout=timeout)

    def start(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.cli("start", *extra)

    def status(self) -> dict[str, Any]:
        proc = self.cli("status", "--json")
        try:
            return dict(json.loads(proc.stdout))
        except ValueError:
            return {}

    def training(self) -> dict[str, Any]:
        """The run's ``training`` entry in ``status --json`` ({} when status cannot tell)."""
        for run in self.status().get("runs", []):
            if run.get("name") == RUN:
                return dict(run.get("training") or {})
        return {}

    def train_stage(self) -> dict[str, Any]:
        """The train stage's entry in ``status --json`` ({} when status cannot tell)."""
        for run in self.status().get("runs", []):
            if run.get("name") == RUN:
                for stage in run.get("stages", []):
                    if stage.get("name") == "train":
                        return dict(stage)
        return {}

    # -- its processes, as the host sees them ----------------------------------------------------------------
    def processes(self) -> list[psutil.Process]:
        """Every live process of this VM (pid 1 included), as host psutil objects. None once a namespaced VM's
        pid 1 is gone (its whole namespace died with it): the kernel may give a later namespace, another test's VM,
        the same inode number, and a kill by inode would hit it."""
        if self.namespaced and (self._vm is None or self._vm.poll() is not None):
            return []
        found = []
        for proc in psutil.process_iter():
            try:
                if self._mine(proc) and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def _mine(self, proc: psutil.Process) -> bool:
        if self.namespaced:
            try:
                return os.stat(f"/proc/{proc.pid}/ns/pid").st_ino == self._ns_inode
            except OSError:
                return False
        return proc.environ().get(_VM_TAG) == str(self.root)

    def host_pid(self, ns_pid: int) -> int | None:
        """The host pid of a pid seen inside the VM (the pidfile's, the lease marker's)."""
        if not self.namespaced:
            return ns_pid
        for proc in self.processes():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("NSpid:") and int(line.split()[-1]) == ns_pid:
                        return proc.pid
        return None

    def daemon_alive(self) -> bool:
        return any("f5guard.daemon" in " ".join(p.cmdline()) for p in _safe(self.processes()))

    def freeze(self) -> None:
        """SIGSTOP every process of the VM (a VM that stalls)."""
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                proc.suspend()

    def thaw(self) -> None:
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                proc.resume()

    def kill(self) -> None:
        """The VM dies: SIGKILL to its pid 1 takes every process of the namespace with it."""
        if self.namespaced and self._vm is not None and self._vm.poll() is None:  # once: a dead init's pid is reused
            with contextlib.suppress(ProcessLookupError):
                assert self._init_pid is not None
                os.kill(self._init_pid, signal.SIGKILL)
            self._vm.wait(timeout=30)
        for proc in self.processes():  # without a namespace (or a straggler): one by one
            with contextlib.suppress(psutil.Error):
                proc.kill()
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- what its trainer did --------------------------------------------------------------------------------
    def trainer_events(self) -> list[dict[str, Any]]:
        try:
            lines = self.events.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def starts(self) -> list[dict[str, Any]]:
        return [e for e in self.trainer_events() if e["ev"] == "start"]


def _safe(procs: list[psutil.Process]) -> list[psutil.Process]:
    ok = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.cmdline()
            ok.append(proc)
    return ok


# -------------------------------------------------------------------------------------------- measurements
def alive_intervals(events: list[dict[str, Any]], step_s: float) -> list[tuple[float, float]]:
    """When a trainer was training: each tick stands for the step before it; ticks closer than three steps
    merge (a frozen or killed trainer leaves a gap)."""
    ticks = sorted(e["t"] for e in events if e["ev"] == "tick")
    spans: list[tuple[float, float]] = []
    for t in ticks:
        if spans and t - spans[-1][1] <= 3 * step_s:
            spans[-1] = (spans[-1][0], t)
        else:
            spans.append((t - step_s, t))
    return spans


def overlap_s(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Seconds during which both sets of intervals were alive."""
    total = 0.0
    for a0, a1 in a:
        for b0, b1 in b:
            total += max(0.0, min(a1, b1) - max(a0, b0))
    return total


@dataclass(frozen=True)
class Sample:
    t: float  # wall clock
    durable: tuple[int, ...]  # updates whose .pt and manifest in the cloud match (size and sha256)
    mismatched: tuple[str, ...]  # final-named checkpoints whose manifest describes other bytes
    manifest_only: tuple[str, ...]  # manifests whose checkpoint is not in the cloud (yet)

    @property
    def highest(self) -> int | None:
        return max(self.durable) if self.durable else None


class CloudWatch:
    """Samples the cloud's durable checkpoints (and the updates each view's manifests name) every ``every_s``
    from a thread, between replicator passes."""

    def __init__(self, sim: DriveSim, every_s: float = 0.25) -> None:
        self.sim = sim
        self.every_s = every_s
        self.samples: list[Sample] = []
        self.named: dict[str, list[tuple[float, int | None, int | None]]] = {v: [] for v in sim.views}
        self.waiting: dict[str, list[tuple[float, int]]] = {v: [] for v in sim.views}  # checkpoints not uploaded
        self._hashes: dict[tuple[str, int, int, int, str], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloudwatch", daemon=True)

    def __enter__(self) -> CloudWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            with contextlib.suppress(OSError), self.sim.hold():
                self.samples.append(self.sample())
                for view, timeline in self.named.items():
                    timeline.append((time.time(), *_highest_named(self.sim.view(view))))
                    self.waiting[view].append((time.time(), len(self.sim.uploading(view, "*ckpt-*.pt"))))

    def sample(self) -> Sample:
        durable, mismatched, orphans = [], [], []
        for dirpath, _dirs, files in os.walk(self.sim.cloud):
            for name in fnmatch.filter(files, "ckpt-e*-u*.json"):
                manifest = Path(dirpath) / name
                ckpt = manifest.with_suffix(".pt")
                try:
                    doc = json.loads(manifest.read_text())
                    st = ckpt.stat()
                except FileNotFoundError:
                    orphans.append(name)
                    continue
                except ValueError:
                    continue
                recorded = doc.get("digest") or f"sha256:{doc.get('sha256')}"  # format 2, or 1
                if st.st_size == doc.get("size") and self._digest(ckpt, st, recorded.split(":")[0]) == recorded:
                    durable.append(int(doc["update"]))
                else:
                    mismatched.append(ckpt.name)
        return Sample(time.time(), tuple(sorted(durable)), tuple(sorted(mismatched)), tuple(sorted(orphans)))

    def _digest(self, path: Path, st: os.stat_result, algorithm: str) -> str:
        """``<algorithm>:<hex>`` of the file, computed here (not with f5guard's code: this is the oracle)."""
        key = (str(path), st.st_ino, st.st_mtime_ns, st.st_size, algorithm)
        if key not in self._hashes:
            data = path.read_bytes()
            value = f"{zlib.crc32(data):08x}" if algorithm == "crc32" else hashlib.sha256(data).hexdigest()
            self._hashes[key] = f"{algorithm}:{value}"
        return self._hashes[key]

    # -- what the samples say --------------------------------------------------------------------------------
    def decreases(self) -> list[tuple[float, int, int | None]]:
        """(when, from, to) each time the highest durable update in the cloud went down (to None: none left)."""
        drops: list[tuple[float, int, int | None]] = []
        best: int | None = None
        for s in self.samples:
            if best is not None and (s.highest is None or s.highest < best):
                drops.append((s.t, best, s.highest))
            best = s.highest
        return drops

    def no_durable_s(self) -> float:
        """Seconds during which the cloud held no durable checkpoint after it had held one."""
        total, seen = 0.0, False
        for prev, cur in zip(self.samples, self.samples[1:], strict=False):
            seen = seen or prev.highest is not None
            if seen and prev.highest is None:
                total += cur.t - prev.t
        return total

    def mismatched(self) -> set[str]:
        return {name for s in self.samples for name in s.mismatched}

    def newest_before(self, t: float) -> int | None:
        """The highest durable update the cloud had held at any sample up to wall time ``t``."""
        values = [s.highest for s in self.samples if s.t <= t and s.highest is not None]
        return max(values) if values else None

    def most_waiting(self, view: str, until: float = float("inf")) -> int:
        """The most final-named checkpoints ``view`` held at once that had not reached the cloud, up to ``until``:
        what its VM would have lost dying then, and what its Drive cache had to hold."""
        return max((n for t, n in self.waiting[view] if t <= until), default=0)

    def highest_ever(self) -> int | None:
        return self.newest_before(float("inf"))

    def named_in_view(self, view: str, t: float, *, uploading_too: bool = False) -> int | None:
        """The highest update a checkpoint manifest in ``view`` named at the last sample up to ``t`` (what a
        runtime there could know of, whether or not the checkpoint itself had arrived): only manifests that
        record it in the cloud (or predate that record), unless ``uploading_too``."""
        before = [(n, any_) for ts, n, any_ in self.named[view] if ts <= t]
        if not before:
            return None
        return before[-1][1] if uploading_too else before[-1][0]


_MANIFEST = re.compile(r"^ckpt-e\d+-u(\d+)(?:-[0-9a-f]+)?\.json$")  # durable.py's names, with or without a runtime tag


def _highest_named(root: Path) -> tuple[int | None, int | None]:
    """(highest update a manifest records in the cloud, highest any manifest names): a manifest whose ``cloud``
    note says "uploading" names a checkpoint its VM had not uploaded yet; one without the note predates it."""
    best: int | None = None
    any_: int | None = None
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if match := _MANIFEST.match(name):
                update = int(match[1])
                any_ = update if any_ is None else max(any_, update)
                try:
                    state = (json.loads((Path(dirpath) / name).read_text()).get("cloud") or {}).get("state")
                except (OSError, ValueError, AttributeError):
                    state = None
                if state != "uploading":
                    best = update if best is None else max(best, update)
    return best, any_
