"""Supervised F5-TTS training: restart latency, trainer speed and daemon cost, against bare baselines.

Three measurements on a tiny real F5-TTS model (CPU, offline), each side by side in one run, the sides
alternating:

1. Trainer death -> new trainer process (and -> first `update` event of the resumed run), median of N kill -9
   each: a `type = "train"` stage under f5guard (pid from <work>/state.json) vs a bare
   ``bash -c 'until python -m f5guard.trainer --spec SPEC; do :; done'`` loop (its python child). The new
   trainer is detected identically on both sides: a ~1 ms scan of /proc for a process whose argv holds
   "f5guard.trainer" and this series' spec path, and that did not exist at the kill. Each kill lands right after
   the trainer reported the last checkpoint file of an update complete (and, under f5guard, after the daemon
   copied it to home), so no kill truncates a checkpoint and every restart resumes from that update. After
   each restart the bench waits for the resumed run's next checkpoint, then freezes that side (SIGSTOP to its
   process group) while the other side is measured.
2. Tiny-model updates/s under f5guard vs the bare ``python -m f5guard.trainer`` entry, same spec, alternating,
   median of N runs each; the rate comes from the progress file's `update` events (first to last).
3. Daemon RSS and CPU (% of one core) while a trainer trains, over a window of >= 20 s; a second window
   without checkpoints separates supervision from checkpoint sync.

Writes bench/out/train.json and prints a summary with the ratios against /work/shared/ANCHORS.md.
Usage: .venv/bin/python bench/train_bench.py [--kills 10] [--speed-runs 3] [--speed-epochs 80] [--window-s 22]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from f5guard.jsonlines import read as read_events  # raw records: the bench reads keys of its own
from f5guard.trainer.spec import TrainSpec

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PY = sys.executable
F5GUARD = str(Path(sys.executable).parent / "f5guard")

# One set of trainer knobs for both sides (the brief's config); only `epochs` varies by measurement.
KNOBS: dict[str, Any] = {
    "model": "tiny", "learning_rate": 1e-4, "batch_size_per_gpu": 2, "batch_size_type": "sample",
    "max_samples": 2, "num_warmup_updates": 2, "save_per_updates": 20, "last_per_updates": 10,
    "keep_last_n_checkpoints": 2, "num_workers": 1, "threads": 1, "throttle_s": 0.0,
}  # fmt: skip
KILL_EPOCHS = 2000  # the kill series never reaches the end of training
TARGETS = {"new_process_ratio_max": 2.0, "first_update_delta_max_s": 0.2, "speed_ratio_min": 0.98,
           "daemon_rss_mb_max": 60.0, "daemon_cpu_pct_max": 1.0}  # fmt: skip

BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("F5GUARD_")}
BASE_ENV.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled", TQDM_DISABLE="1")
# What the daemon adds for a train stage (runner.env + train_kind): the bare side gets the same.
TRAINER_ENV = {**BASE_ENV, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}

ANOMALIES: list[str] = []


def note(text: str) -> None:
    ANOMALIES.append(text)
    print(f"  ! {text}", flush=True)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -------------------------------------------------------------------------------------- data & configs
def tiny_dataset() -> Path:
    root = OUT / "tinydata"
    data = root / "data"
    if not all((data / n).is_file() for n in ("raw.arrow", "duration.json", "vocab.txt")):
        log("building the tiny dataset (cached in bench/out/tinydata)")
        subprocess.run([PY, "-m", "f5guard.trainer.tinydata", str(root), "--n", "8"], check=True, env=BASE_ENV,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)  # fmt: skip
    return data


def toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for these plain paths/words
    return repr(value)


def write_config(root: Path, dataset: Path, epochs: int, overrides: dict[str, Any] | None = None) -> Path:
    (root / "home").mkdir(parents=True)
    # One runtime on a local home: no other runtime can show up, so no settle period before training.
    lines = [f"home = {toml_value(str(root / 'home'))}", f"work = {toml_value(str(root / 'work'))}",
             "[lease]", "settle_s = 0",
             "[[runs]]", 'name = "bench"', "[[runs.stages]]", 'name = "train"', 'type = "train"',
             f"dataset = {toml_value(str(dataset))}", f"epochs = {epochs}"]  # fmt: skip
    lines += [f"{key} = {toml_value(value)}" for key, value in {**KNOBS, **(overrides or {})}.items()]
    lines += [
        'env = { TQDM_DISABLE = "1" }',
        "[runs.stages.restart]",
        "budget = 100",
        "backoff_initial_s = 0.0",
    ]
    config = root / "f5guard.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def write_spec(root: Path, dataset: Path, epochs: int) -> tuple[Path, Path]:
    """A bare spec; returns (spec path, progress path)."""
    progress = root / "progress.jsonl"
    spec = root / "spec.json"
    TrainSpec(dataset_dir=dataset, checkpoint_dir=root / "ckpts", progress_path=progress, epochs=epochs,
              **KNOBS).to_json(spec)  # fmt: skip
    return spec, progress


def same_spec(bare: Path, daemon: Path) -> None:
    """The daemon writes its own spec: check that only the paths differ from the bare one."""
    paths = {"dataset_dir", "checkpoint_dir", "progress_path"}
    a, b = json.loads(bare.read_text()), json.loads(daemon.read_text())
    diff = sorted(k for k in set(a) | set(b) if k not in paths and a.get(k) != b.get(k))
    if diff:
        note(
            f"bare and f5guard specs differ in {diff}: " + ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in diff)
        )


# ------------------------------------------------------------------------------------ progress & procs
class Progress:
    """Incremental reader of a trainer's progress.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.events: list[dict[str, Any]] = []

    def poll(self) -> int:
        if self.path.exists():
            new, self.offset = read_events(self.path, self.offset)
            self.events += new
        return len(self.events)

    def wait(self, pred: Callable[[dict[str, Any]], bool], since: int, timeout: float, what: str, *,
             interval: float = 0.002, fail_pid: int | None = None) -> tuple[int, dict[str, Any]]:  # fmt: skip
        deadline = time.monotonic() + timeout
        i = since
        while True:
            self.poll()
            while i < len(self.events):
                ev = self.events[i]
                if pred(ev):
                    return i, ev
                if fail_pid is not None and ev.get("event") == "exit" and ev.get("pid") == fail_pid:
                    raise RuntimeError(f"trainer {fail_pid} exited while waiting for {what}: {ev.get('reason')}")
                i += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout:g}s ({self.path})")
            time.sleep(interval)


def final_checkpoint(pid: int) -> Callable[[dict[str, Any]], bool]:
    """The last checkpoint file F5-TTS writes at an update (model_last first, then model_N at save_per)."""
    every = KNOBS["save_per_updates"]

    def pred(ev: dict[str, Any]) -> bool:
        if ev.get("event") != "checkpoint" or ev.get("pid") != pid:
            return False
        return (not ev.get("last")) if ev.get("update", 0) % every == 0 else bool(ev.get("last"))

    return pred


def argv_of(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_trainer(argv: list[str] | None, spec: str) -> bool:
    # An argv element equal to "f5guard.trainer": a forked-not-yet-exec'd bash child (whose one -c argument
    # merely contains the text) does not count, so both sides are seen at the trainer's exec.
    return bool(argv) and "f5guard.trainer" in argv and spec in argv  # type: ignore[operator]


def all_pids() -> set[int]:
    return {int(name) for name in os.listdir("/proc") if name.isdigit()}


def trainers(spec: str) -> list[int]:
    return [pid for pid in all_pids() if is_trainer(argv_of(pid), spec)]


def dead(pid: int) -> bool:
    """Gone, or a zombie: the kernel finished tearing the process down (only the reaping may be left)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state in (b"Z", b"X")


def wait_new_trainer(spec: str, before: set[int], victim: int, timeout: float) -> tuple[int, float, float | None]:
    """Tight (~1 ms) scan of /proc for a trainer of `spec` that did not exist in `before`; also notes when the
    victim was seen dead. Returns (new pid, its monotonic time, the victim's or None if not seen first)."""
    deadline = time.monotonic() + timeout
    victim_dead: float | None = None
    while True:
        if victim_dead is None and dead(victim):
            victim_dead = time.monotonic()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in before:
                continue
            if is_trainer(argv_of(pid), spec):
                return pid, time.monotonic(), victim_dead
        if time.monotonic() > deadline:
            raise TimeoutError(f"no new trainer process for {spec} within {timeout:g}s")
        time.sleep(0.001)


def signal_group(pgid: int | None, sig: signal.Signals) -> None:
    if pgid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def parse_ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------------------- the two sides
class F5Side:
    """A daemon supervising one train stage."""

    name = "f5guard"

    def __init__(self, root: Path, dataset: Path, epochs: int, overrides: dict[str, Any] | None = None) -> None:
        self.root = root
        self.config = write_config(root, dataset, epochs, overrides)
        self.work = root / "work"
        self.spec = str(self.work / "runs" / "bench" / "train" / "spec.json")
        self.progress = Progress(self.work / "runs" / "bench" / "train" / "progress.jsonl")
        self.daemon_pid: int | None = None
        self.trainer_pid: int | None = None  # the trainer the bench knows (from its progress events)
        self.frozen: int | None = None

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([F5GUARD, *args, "--config", str(self.config)], capture_output=True, text=True,
                              env=BASE_ENV, timeout=timeout, check=False)  # fmt: skip

    def start(self) -> None:
        done = self.cli("start")
        if done.returncode != 0:
            raise RuntimeError(f"f5guard start failed ({done.returncode}): {done.stdout}{done.stderr}")
        report = json.loads(self.cli("status", "--json").stdout)
        self.daemon_pid = report["daemon"]["pid"]

    def state_record(self) -> dict[str, Any]:
        doc = json.loads((self.work / "state.json").read_text())
        record: dict[str, Any] = doc["runs"]["bench"]["stages"]["train"]
        return record

    def state_pid(self) -> int | None:
        try:
            pid = self.state_record().get("pid")
        except (OSError, ValueError, KeyError):
            return None
        return int(pid) if pid else None

    def victim(self) -> int:
        """The pid to kill, from state.json; checked against the pid in the progress events."""
        deadline = time.monotonic() + 3
        pid = self.state_pid()
        while pid != self.trainer_pid and time.monotonic() < deadline:
            time.sleep(0.01)
            pid = self.state_pid()
        if pid != self.trainer_pid:
            note(f"state.json pid {pid} is not the training pid {self.trainer_pid} (progress events)")
        return int(self.trainer_pid or 0)

    def freeze(self) -> None:
        self.frozen = self.trainer_pid
        signal_group(self.frozen, signal.SIGSTOP)

    def thaw(self) -> None:
        signal_group(self.frozen, signal.SIGCONT)
        self.frozen = None

    def close(self) -> None:
        self.thaw()
        if self.daemon_pid is None and not (self.work / "daemon.pid.json").exists():
            return
        try:
            done = self.cli("stop", timeout=120)
            if done.returncode != 0:
                note(f"f5guard stop exited {done.returncode}: {(done.stdout + done.stderr).strip()[:300]}")
        except subprocess.TimeoutExpired:
            note("f5guard stop timed out after 120 s: killing the daemon and its trainer")
        if self.daemon_pid and psutil.pid_exists(self.daemon_pid):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(self.daemon_pid)
                if proc.status() != psutil.STATUS_ZOMBIE and "f5guard" in " ".join(proc.cmdline()):
                    for child in proc.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            child.kill()
                    proc.kill()
        for pid in trainers(self.spec):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class BashSide:
    """bash -c 'until python -m f5guard.trainer --spec SPEC; do :; done'."""

    name = "bash"

    def __init__(self, root: Path, dataset: Path, epochs: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        spec, progress = write_spec(root, dataset, epochs)
        self.spec = str(spec)
        self.progress = Progress(progress)
        self.loop: subprocess.Popen[bytes] | None = None
        self.trainer_pid: int | None = None
        self.log = root / "trainer.log"
        self.frozen = False

    def start(self) -> None:
        script = f"until {shlex.quote(PY)} -m f5guard.trainer --spec {shlex.quote(self.spec)}; do :; done"
        with self.log.open("ab") as out:
            self.loop = subprocess.Popen(["bash", "-c", script], env=TRAINER_ENV, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip

    def victim(self) -> int:
        assert self.loop is not None
        kids = [p.pid for p in psutil.Process(self.loop.pid).children() if is_trainer(argv_of(p.pid), self.spec)]
        if kids != [self.trainer_pid]:
            note(f"bash loop children {kids} are not the training pid {self.trainer_pid}")
        return int(self.trainer_pid or 0)

    def freeze(self) -> None:
        assert self.loop is not None
        signal_group(self.loop.pid, signal.SIGSTOP)  # bash, its trainer, any orphaned worker of the last one
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen and self.loop is not None:
            signal_group(self.loop.pid, signal.SIGCONT)
        self.frozen = False

    def close(self) -> None:
        if self.loop is None:
            return
        self.thaw()
        signal_group(self.loop.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.loop.wait(10)
        for pid in trainers(self.spec):  # a trainer's dataloader worker is in the same group; belt and braces
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


Side = F5Side | BashSide


# ----------------------------------------------------------------------------------------- 1. restarts
def first_ready(side: Side, timeout: float = 240) -> None:
    """Wait for the first trainer's start event and its first complete checkpoint."""
    _, start = side.progress.wait(lambda e: e.get("event") == "start", 0, timeout, f"{side.name} first start")
    side.trainer_pid = int(start["pid"])
    side.progress.wait(final_checkpoint(side.trainer_pid), 0, timeout, f"{side.name} first checkpoint",
                       fail_pid=side.trainer_pid)  # fmt: skip


def one_kill(side: Side, timeout: float = 180) -> dict[str, Any]:
    side.thaw()
    since = side.progress.poll()
    assert side.trainer_pid is not None
    _, ckpt = side.progress.wait(final_checkpoint(side.trainer_pid), since, timeout,
                                 f"{side.name} checkpoint before the kill",
                                 fail_pid=side.trainer_pid)  # fmt: skip
    sync_wait_s = wait_durable(side, ckpt["update"]) if isinstance(side, F5Side) else None
    victim = side.victim()
    since = side.progress.poll()
    before = all_pids()
    t_unix = time.time()
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    new_pid, t_new, t_dead = wait_new_trainer(side.spec, before, victim, 30)
    new_process_s = t_new - t0
    _, start = side.progress.wait(lambda e: e.get("event") == "start" and e.get("pid") == new_pid, since,
                                  timeout, f"{side.name} start of {new_pid}", fail_pid=new_pid)  # fmt: skip
    _, first = side.progress.wait(lambda e: e.get("event") == "update" and e.get("pid") == new_pid, since,
                                  timeout, f"{side.name} first update of {new_pid}",
                                  fail_pid=new_pid)  # fmt: skip
    side.progress.wait(final_checkpoint(new_pid), since, timeout, f"{side.name} checkpoint of {new_pid}",
                       fail_pid=new_pid)  # fmt: skip
    side.trainer_pid = new_pid
    side.freeze()
    if start.get("start_update") != ckpt["update"]:
        note(
            f"{side.name}: killed after the checkpoint at update {ckpt['update']} but the restart resumed "
            f"at {start.get('start_update')} (checkpoint {start.get('checkpoint')}, "
            f"actions {start.get('actions')})"
        )
    elif start.get("actions") or start.get("quarantined"):
        note(f"{side.name}: resume at {start.get('start_update')} took actions {start.get('actions')}")
    return {
        "killed_pid": victim, "new_pid": new_pid, "kill_unix": t_unix, "killed_after_update": ckpt["update"],
        "resumed_at": start.get("start_update"), "new_process_s": new_process_s,
        "victim_dead_s": None if t_dead is None else t_dead - t0,
        "start_event_s": start["t"] - t_unix, "first_update_s": first["t"] - t_unix,
        "first_update": first.get("update"), "waited_for_home_copy_s": sync_wait_s,
    }  # fmt: skip


def wait_durable(side: F5Side, update: int, timeout: float = 3.0) -> float | None:
    """Let the daemon's sync thread finish copying this checkpoint to home, so the kill finds it idle (as it
    is for most of a real run: checkpoints minutes apart). None if it did not within `timeout`."""
    home = side.root / "home" / "runs" / "bench" / "checkpoints"
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with contextlib.suppress(OSError):
            if any(f"-u{update:09d}" in name and name.endswith(".json") for name in os.listdir(home)):
                return round(time.monotonic() - t0, 3)
        time.sleep(0.005)
    note(f"f5guard: the checkpoint at update {update} was not on home {timeout:g}s after its event")
    return None


def daemon_breakdown(side: F5Side, kills: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the daemon's restart time goes, from its own timestamped notes (stage log, ms resolution):
    kill -> "attempt N ended" (reaped) -> "attempt N+1: argv" (before Popen: state save, restore check,
    prepare_resume, spec) -> daemon log "attempt started" (after Popen returned: after the child's exec)."""
    ended, noted, started = [], [], {}
    with contextlib.suppress(OSError):
        for line in (side.work / "logs" / "bench" / "train.log").read_text().splitlines():
            stamp, _, text = line.partition(" [f5guard] ")
            if not text:
                continue
            with contextlib.suppress(ValueError):
                if text.startswith("attempt ") and " ended: " in text:
                    ended.append(parse_ts(stamp))
                elif text.startswith("attempt ") and ": " in text and "f5guard.trainer" in text:
                    noted.append(parse_ts(stamp))
    for ev in daemon_events(side, "attempt started", 0, float("inf")):
        started[int(ev["pid"])] = parse_ts(ev["timestamp"])
    reap, prep, spawn = [], [], []
    for k in kills:
        t_end = min((t for t in ended if t >= k["kill_unix"] - 0.002), default=None)
        t_note = min((t for t in noted if t_end is not None and t >= t_end), default=None)
        t_start = started.get(k["new_pid"])
        if t_end is None or t_note is None or t_start is None:
            continue
        reap.append(t_end - k["kill_unix"])
        prep.append(t_note - t_end)
        spawn.append(t_start - t_note)
    return {"kill_to_reaped_ms": ms(med(reap)), "reaped_to_spawn_call_ms": ms(med(prep)),
            "spawn_call_to_started_ms": ms(med(spawn)), "samples": len(reap),
            "note": "medians; stage-log notes have 1 ms resolution; wall clock"}  # fmt: skip


def ms(seconds: float) -> float:
    return round(1000 * seconds, 1)


def restart_series(tmp: Path, dataset: Path, n: int) -> dict[str, Any]:
    f5 = F5Side(tmp / "kill-f5guard", dataset, KILL_EPOCHS)
    bash = BashSide(tmp / "kill-bash", dataset, KILL_EPOCHS)
    results: dict[str, list[dict[str, Any]]] = {"f5guard": [], "bash": []}
    try:
        log("restart series: starting the daemon and the bash loop")
        f5.start()
        bash.start()
        for side in (f5, bash):
            first_ready(side)
            side.freeze()
        same_spec(Path(bash.spec), Path(f5.spec))
        for i in range(n):
            order: list[Side] = [f5, bash] if i % 2 == 0 else [bash, f5]
            for side in order:
                r = one_kill(side)
                results[side.name].append(r)
                log(
                    f"kill {i + 1}/{n} {side.name:7s}: new process {1000 * r['new_process_s']:7.1f} ms, "
                    f"first update {r['first_update_s']:5.2f} s (resumed at {r['resumed_at']})"
                )
        record = f5.state_record()
        final = {k: record.get(k) for k in ("state", "attempts", "restarts", "last_exit", "reason")}
        if record.get("state") != "running" or record.get("restarts") != n:
            note(f"f5guard stage after {n} kills: {final}")
        breakdown = daemon_breakdown(f5, results["f5guard"])
    finally:
        bash.close()
        f5.close()
    out: dict[str, Any] = {"kills": n, "f5guard_stage_after": final, "f5guard_daemon_log": breakdown}
    for name, rows in results.items():
        seen = [r for r in rows if r["victim_dead_s"] is not None]
        out[name] = {
            "new_process_ms_median": round(1000 * med([r["new_process_s"] for r in rows]), 1),
            "victim_dead_ms_median": ms(med([r["victim_dead_s"] for r in seen])),
            "dead_to_new_process_ms_median": ms(med([r["new_process_s"] - r["victim_dead_s"] for r in seen])),
            "start_event_s_median": round(med([r["start_event_s"] for r in rows]), 3),
            "first_update_s_median": round(med([r["first_update_s"] for r in rows]), 3),
            "new_process_ms": [round(1000 * r["new_process_s"], 1) for r in rows],
            "first_update_s": [round(r["first_update_s"], 3) for r in rows],
            "start_event_s": [round(r["start_event_s"], 3) for r in rows],
            "resumed_at": [r["resumed_at"] for r in rows],
        }
    f, b = out["f5guard"], out["bash"]
    out["new_process_ratio"] = round(f["new_process_ms_median"] / b["new_process_ms_median"], 2)
    out["first_update_delta_s"] = round(f["first_update_s_median"] - b["first_update_s_median"], 3)
    # Round i's two kills are seconds apart: the paired figures cancel most of the machine's drifting load.
    pairs = list(zip(results["f5guard"], results["bash"], strict=True))
    out["new_process_ratio_paired_median"] = round(med([a["new_process_s"] / c["new_process_s"] for a, c in pairs]), 2)
    out["first_update_delta_paired_median_s"] = round(
        med([a["first_update_s"] - c["first_update_s"] for a, c in pairs]), 3
    )
    return out


# -------------------------------------------------------------------------------------------- 2. speed
def rate_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    starts = [e for e in events if e.get("event") == "start"]
    if len(starts) != 1:
        note(f"a speed run had {len(starts)} trainer starts (expected 1)")
    pid = starts[-1]["pid"]
    ups = [e for e in events if e.get("event") == "update" and e.get("pid") == pid]
    first, last = ups[0], ups[-1]
    span = last["t"] - first["t"]
    updates = last["update"] - first["update"]
    exits = [e.get("reason") for e in events if e.get("event") == "exit"]
    if exits != ["finished"]:
        note(f"a speed run ended with exit events {exits}")
    return {"updates": updates, "span_s": round(span, 3), "updates_per_s": round(updates / span, 3),
            "from_update": first["update"], "to_update": last["update"]}  # fmt: skip


def speed_f5guard(root: Path, dataset: Path, epochs: int, bare_spec: Path | None) -> dict[str, Any]:
    side = F5Side(root, dataset, epochs)
    try:
        side.start()
        side.progress.wait(lambda e: e.get("event") == "exit", 0, 900, "f5guard speed run to finish",
                           interval=0.05)  # fmt: skip
        if bare_spec is not None:
            same_spec(bare_spec, Path(side.spec))
        deadline = time.monotonic() + 60
        while side.state_record().get("state") == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        stage_state = side.state_record().get("state")
        if stage_state != "done":
            note(f"f5guard speed run: stage state {stage_state!r} after the trainer finished")
    finally:
        side.close()
    return rate_of(side.progress.events)


def speed_bare(root: Path, dataset: Path, epochs: int) -> tuple[dict[str, Any], Path]:
    root.mkdir(parents=True)
    spec, progress = write_spec(root, dataset, epochs)
    with (root / "trainer.log").open("wb") as out:
        done = subprocess.run([PY, "-m", "f5guard.trainer", "--spec", str(spec)], env=TRAINER_ENV,
                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=900,
                              check=False)  # fmt: skip
    if done.returncode != 0:
        note(f"bare speed run exited {done.returncode} (see {root / 'trainer.log'})")
    reader = Progress(progress)
    reader.poll()
    return rate_of(reader.events), spec


def speed_series(tmp: Path, dataset: Path, runs: int, epochs: int) -> dict[str, Any]:
    rows: dict[str, list[dict[str, Any]]] = {"f5guard": [], "bare": []}
    bare_spec: Path | None = None
    for i in range(runs):
        for name in ("f5guard", "bare") if i % 2 == 0 else ("bare", "f5guard"):
            root = tmp / f"speed-{name}-{i}"
            if name == "bare":
                r, bare_spec = speed_bare(root, dataset, epochs)
            else:
                r = speed_f5guard(root, dataset, epochs, bare_spec)
            rows[name].append(r)
            log(
                f"speed run {i + 1}/{runs} {name:7s}: {r['updates_per_s']:.2f} updates/s "
                f"({r['updates']} updates in {r['span_s']:.1f} s)"
            )
    out: dict[str, Any] = {"runs": runs, "epochs": epochs, "updates_per_run": epochs * 4}
    for name, rs in rows.items():
        rates = [r["updates_per_s"] for r in rs]
        out[name] = {"updates_per_s_median": round(med(rates), 3), "updates_per_s": rates,
                     "s_per_update_median": round(1 / med(rates), 4)}  # fmt: skip
    out["ratio"] = round(out["f5guard"]["updates_per_s_median"] / out["bare"]["updates_per_s_median"], 3)
    out["pair_ratios"] = [round(f["updates_per_s"] / b["updates_per_s"], 3)
                          for f, b in zip(rows["f5guard"], rows["bare"], strict=True)]  # fmt: skip
    return out


# -------------------------------------------------------------------------------------- 3. daemon cost
NO_CHECKPOINTS = {"save_per_updates": 10**6, "last_per_updates": 10**6}  # none in the window (timed: 10 min)


def daemon_cost(tmp: Path, dataset: Path, window_s: float, label: str,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    side = F5Side(tmp / f"daemon-cost-{label}", dataset, KILL_EPOCHS, overrides)
    try:
        side.start()
        assert side.daemon_pid is not None
        _, start = side.progress.wait(lambda e: e.get("event") == "start", 0, 240, "daemon-cost start")
        side.progress.wait(lambda e: e.get("event") == "update" and e.get("pid") == start["pid"], 0, 240,
                           "daemon-cost first update", fail_pid=start["pid"])  # fmt: skip
        daemon = psutil.Process(side.daemon_pid)
        since = side.progress.poll()
        c0, t0, u0, th0 = daemon.cpu_times(), time.monotonic(), time.time(), thread_cpu(daemon)
        rss: list[float] = []
        while time.monotonic() - t0 < window_s:
            rss.append(daemon.memory_info().rss / 2**20)
            time.sleep(0.25)
        c1, t1, u1, th1 = daemon.cpu_times(), time.monotonic(), time.time(), thread_cpu(daemon)
        uss = daemon.memory_full_info().uss / 2**20
        threads = daemon.num_threads()
        side.progress.poll()
        window = [e for e in side.progress.events[since:] if e.get("event") == "update"]
        starts = [e for e in side.progress.events[since:] if e.get("event") == "start"]
        if starts:
            note(f"the trainer restarted during the daemon-cost window ({len(starts)} starts)")
    finally:
        side.close()
    cpu = (c1.user + c1.system) - (c0.user + c0.system)
    trained = window[-1]["update"] - window[0]["update"] if len(window) >= 2 else 0
    pid = side.daemon_pid
    main_cpu = th1.get(pid, 0.0) - th0.get(pid, 0.0)
    syncs = daemon_events(side, "sync.done", u0, u1)
    return {
        "window_s": round(t1 - t0, 1), "rss_mb_max": round(max(rss), 1), "rss_mb_median": round(med(rss), 1),
        "uss_mb": round(uss, 1), "cpu_pct_of_one_core": round(100 * cpu / (t1 - t0), 2),
        "cpu_s": round(cpu, 3), "threads": threads, "updates_in_window": trained,
        "control_thread_cpu_pct": round(100 * main_cpu / (t1 - t0), 2),
        "other_threads_cpu_pct": round(100 * (cpu - main_cpu) / (t1 - t0), 2),
        "checkpoints_synced_in_window": len(syncs),
        "sync_seconds_median": med([float(e.get("seconds", "nan")) for e in syncs]),
        "overrides": overrides or {},
        "note": "other threads: checkpoint sync, inotify watcher, output pump, waiter, lease heartbeat",
    }  # fmt: skip


def thread_cpu(proc: psutil.Process) -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in proc.threads()}


def daemon_events(side: F5Side, event: str, t0: float, t1: float) -> list[dict[str, Any]]:
    found = []
    with contextlib.suppress(OSError):
        for line in (side.work / "logs" / "daemon.jsonl").read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError):
                ev = json.loads(line)
                if ev.get("event") == event and t0 <= parse_ts(ev["timestamp"]) <= t1:
                    found.append(ev)
    return found


# ------------------------------------------------------------------------------------------------ main
def git_state() -> dict[str, Any]:
    """The code measured: HEAD and how many tracked files differ from it (others edit the same checkout)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"git_head": git("rev-parse", "--short", "HEAD"),
            "git_modified_files": len(git("diff", "--name-only", "HEAD").splitlines())}  # fmt: skip


def finite(obj: Any) -> Any:
    """Strict JSON: NaN (a median of nothing) becomes null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--speed-runs", type=int, default=3)
    parser.add_argument("--speed-epochs", type=int, default=80, help="4 updates per epoch (8 clips, batch 2)")
    parser.add_argument("--window-s", type=float, default=22.0)
    parser.add_argument(
        "--window2-s",
        type=float,
        default=20.0,
        help="second daemon-cost window without checkpoints (0 skips it)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dirs")
    parser.add_argument("--only", choices=("restart", "speed", "daemon"), action="append")
    args = parser.parse_args()
    only = set(args.only or ("restart", "speed", "daemon"))
    OUT.mkdir(exist_ok=True)
    dataset = tiny_dataset()
    wall0 = time.monotonic()
    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="f5guard-train-bench-"))
    machine = {"cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load0], **git_state()}
    result: dict[str, Any] = {"machine": machine,
                              "knobs": KNOBS, "targets": TARGETS}  # fmt: skip
    try:
        if "restart" in only:
            result["restart"] = restart_series(tmp, dataset, args.kills)
        if "speed" in only:
            result["speed"] = speed_series(tmp, dataset, args.speed_runs, args.speed_epochs)
        if "daemon" in only:
            log(f"daemon cost: {args.window_s:g} s window while training (checkpoint every 10 updates)")
            result["daemon"] = daemon_cost(tmp, dataset, args.window_s, "brief")
            if args.window2_s > 0:
                log(f"daemon cost: {args.window2_s:g} s window while training, no checkpoint in the window")
                result["daemon_no_checkpoints"] = daemon_cost(tmp, dataset, args.window2_s, "nockpt", NO_CHECKPOINTS)
    finally:
        result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        result["wall_s"] = round(time.monotonic() - wall0, 1)
        result["anomalies"] = ANOMALIES
        if args.keep:
            result["tmp"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        (OUT / "train.json").write_text(json.dumps(finite(result), indent=2, allow_nan=False) + "\n")
    summary(result)


def summary(r: dict[str, Any]) -> None:
    def ok(good: bool) -> str:
        return "ok  " if good else "MISS"

    print("\n== f5guard train bench ==  (bench/out/train.json)")
    if "restart" in r:
        x = r["restart"]
        f, b = x["f5guard"], x["bash"]
        print(
            f"trainer death -> new trainer process (median of {x['kills']}): f5guard "
            f"{f['new_process_ms_median']:.1f} ms vs bash loop {b['new_process_ms_median']:.1f} ms = "
            f"{x['new_process_ratio']:.2f}x  "
            f"[{ok(x['new_process_ratio'] <= TARGETS['new_process_ratio_max'])}"
            f" target <= {TARGETS['new_process_ratio_max']}x]"
        )
        print(
            f"kill -> first update event: f5guard {f['first_update_s_median']:.3f} s vs bash "
            f"{b['first_update_s_median']:.3f} s = {x['first_update_delta_s']:+.3f} s  "
            f"[{ok(x['first_update_delta_s'] <= TARGETS['first_update_delta_max_s'])} target <= +0.2 s]"
        )
        print(
            f"  paired per round (medians): new process {x['new_process_ratio_paired_median']:.2f}x, "
            f"first update {x['first_update_delta_paired_median_s']:+.3f} s"
        )
        print(
            f"  kill -> victim dead (zombie or gone): f5guard {f['victim_dead_ms_median']} ms, bash "
            f"{b['victim_dead_ms_median']} ms; dead -> new trainer process: f5guard "
            f"{f['dead_to_new_process_ms_median']} ms, bash {b['dead_to_new_process_ms_median']} ms"
        )
        d = x["f5guard_daemon_log"]
        print(
            f"kill -> start event (imports done): f5guard {f['start_event_s_median']:.3f} s vs bash "
            f"{b['start_event_s_median']:.3f} s; daemon: kill -> reaped {d['kill_to_reaped_ms']} ms, "
            f"-> pre-spawn work {d['reaped_to_spawn_call_ms']} ms, "
            f"-> Popen returned {d['spawn_call_to_started_ms']} ms"
        )
    if "speed" in r:
        s = r["speed"]
        print(
            f"tiny trainer speed (median of {s['runs']}, {s['updates_per_run']} updates): f5guard "
            f"{s['f5guard']['updates_per_s_median']:.2f} vs bare {s['bare']['updates_per_s_median']:.2f} "
            f"updates/s = {s['ratio']:.3f}  [{ok(s['ratio'] >= TARGETS['speed_ratio_min'])} target >= 0.98]"
            f"  pairs {s['pair_ratios']}"
        )
    for key, what in (("daemon", "brief config"), ("daemon_no_checkpoints", "no checkpoints")):
        if key not in r:
            continue
        d = r[key]
        print(
            f"daemon while training, {what} ({d['window_s']:.0f} s, {d['updates_in_window']} updates): "
            f"RSS max {d['rss_mb_max']:.1f} MB (USS {d['uss_mb']:.1f}) "
            f"[{ok(d['rss_mb_max'] <= TARGETS['daemon_rss_mb_max'])}"
            f" <= 60], CPU {d['cpu_pct_of_one_core']:.2f}% of a core "
            f"[{ok(d['cpu_pct_of_one_core'] <= TARGETS['daemon_cpu_pct_max'])} <= 1%]; control thread "
            f"{d['control_thread_cpu_pct']:.2f}%, other threads {d['other_threads_cpu_pct']:.2f}% "
            f"({d['checkpoints_synced_in_window']} checkpoints synced to home)"
        )
    print(f"load average {r['machine']['loadavg_start']} -> {r['machine']['loadavg_end']}; wall {r['wall_s']:.0f} s")
    for a in r["anomalies"]:
        print(f"  ! {a}")


if __name__ == "__main__":
    main()
