"""Hostile files on home never crash f5guard: home is Drive, shared, synced late and out of order, and edited
by people, so every file f5guard reads back from it (state copies, claims and heartbeats, checkpoint manifests,
progress copies, sample notes, the legacy epoch file) is mutated here, as a JSON tree (hostile values in any
place, keys deleted or added) and as raw bytes (truncated, not UTF-8, nested past the recursion limit, huge, a
FIFO, a folder, a link to /dev/zero). Each home is then read the way f5guard reads it: `status` (the report
and its rendering), a daemon's startup (state, epoch floors, claims) and `plot`'s progress events.

0 tracebacks: only F5guardError may leave (a state copy from a newer f5guard: one line); epochs taken from
home stay within bounds. Seeded; F5GUARD_FUZZ_SEED and F5GUARD_FUZZ_N explore more. The daemon-level half
(test_a_daemon_survives_a_hostile_home) runs a real daemon with the torch-free trainer while home is mutated.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from f5guard.checkpoints.durable import durable_name, highest_durable_epoch, list_durable, records
from f5guard.cli.plot import progress_events
from f5guard.config import load_config
from f5guard.errors import F5guardError
from f5guard.layout import HomeLayout, WorkLayout
from f5guard.lease.claims import ClaimWatch, RuntimeId
from f5guard.lease.info import highest_epoch_seen
from f5guard.readback import MAX_EPOCH
from f5guard.state import (
    BatchOverride,
    CloudNote,
    ExportNote,
    LostNote,
    QuarantineNote,
    RestoreNote,
    SampleNote,
    SetupNote,
    StageStatus,
    StateDoc,
    StateStore,
    SupersedeNote,
    TrainingRecord,
)
from f5guard.status.render import make_console, render_status
from f5guard.status.report import build_report, to_json
from tests.conftest import Project, is_dead, write_config
from tests.test_home_vanishes import train_body, training

SEED = int(os.environ.get("F5GUARD_FUZZ_SEED", "20261207"))
MUTATIONS = int(os.environ.get("F5GUARD_FUZZ_N", "400"))
RAW_SHARE = 0.3  # of the mutations: raw bytes rather than a JSON tree

TRAIN = """
[[runs]]
name = "voice"
[[runs.stages]]
name = "train"
type = "train"
mode = "command"
checkpoint_dir = "{work}/ckpts"
command = ["true"]
"""

# JSON-able values a corrupt or hostile file holds: wrong types, non-finite and huge numbers, deep nesting.
HOSTILE: list[Any] = [
    math.nan, math.inf, -math.inf, 10**400, -(10**400), 1e308, 2**63, 2**31, -1, -1.5, 0, 0.5, True, False, None,
    "", " ", "NaN", "1e308", "7", "x" * 100_000, "\x1b[2J\x1b]0;t\x07", "\0", "bad\udcff".encode("utf-8", "replace").decode(),
    [], [1, "a", None], {}, {"k": "v"}, {"state": "exploded"}, [[[[[[]]]]]], {"a": {"b": {"c": {}}}},
]  # fmt: skip


def deep(n: int) -> Any:
    node: Any = []
    for _ in range(n):
        node = [node]
    return node


def full_state(epoch: int, runtime: str, ckpt: Path) -> dict[str, Any]:
    """A state document with every record and note filled: mutations reach every field the renderer reads."""
    doc = StateDoc(epoch=epoch, generation=7, written_at=time.time() - 30)
    doc.daemon.update(pid=4242, host="vm", started_at=time.time() - 99, boot_id="b" * 32, version="x",
                      runtime=runtime, home_problem=None, config_note="edited")  # fmt: skip
    record = doc.stage("voice", "train")
    record.state, record.reason, record.last_lines = StageStatus.FAILED, "exit 3", ["a", "b"]
    record.restarts, record.last_exit, record.items_done, record.items_total = 2, "exit 3", 3, 9
    record.last_failure = "cuda oom"
    doc.stage("voice", "other").state = StageStatus.DONE
    doc.run("voice").training = TrainingRecord(
        update=43, total_updates=1000, loss=0.5, updates_per_s=3.3, epoch=2, durable_update=40, durable_synced_at=time.time() - 60,
        durable_size=64, durable_path=str(ckpt), sync_warning="w", sync_error="e", waiting=None,
        restored=RestoreNote(update=20, epoch=1, at=1.0),
        superseded=SupersedeNote(moved_to="/x", old_vocab=10, vocab=12),
        quarantined=[QuarantineNote(name="model_last.pt", moved_to="/q", reason="torn", at=1.0)],
        export=ExportNote(update=40, path="/e.pt", size=10, running=None, error=None),
        sample=SampleNote(update=40, path="/s.wav", seconds=2.5, running=None, error="e"),
        setup=SetupNote(precision="fp16", precision_requested="auto", device="T4", gpu_memory_gib=15.0,
                        batch_size_per_gpu=3200, batch_size_type="frame", batch_auto=True,
                        grad_accumulation_steps=1, bnb_optimizer=False),
        batch_override=BatchOverride(batch_size_per_gpu=1600, grad_accumulation_steps=2, from_batch=3200,
                                     from_accum=1, batch_size_type="frame", update=40, reason="oom", at=1.0,
                                     config_batch="auto", config_accum=1),
        processes=1,
        cloud=CloudNote(kind="drive", how="DriveFS answers", host="vm", confirmed_update=20, confirmed_at=1.0,
                        confirmed_estimated=False, uploading_update=40, uploading_since=time.time() - 90,
                        uploading_bytes=64, rate_bytes_per_s=2e6, rate_measured=True, held_back=None,
                        lost=LostNote(update=30, writer="vm-a", resumed_from=20, line="u30 never left vm-a")),
    )  # fmt: skip
    return doc.to_json()


def claim(runtime: RuntimeId, epoch: int) -> dict[str, Any]:
    return {"runtime": runtime.__dict__, "epoch": epoch, "work": "/content/work", "since": time.time(),
            "released": False}  # fmt: skip


@dataclass
class HomeFile:
    """One file of a valid home, as a JSON tree (or lines of JSON trees: a progress copy)."""

    path: Path
    tree: Any
    lines: bool = False

    def text(self, tree: Any) -> bytes:
        if self.lines:
            return ("\n".join(json.dumps(t) for t in tree) + "\n").encode()
        return json.dumps(tree).encode()


def valid_home(home: HomeLayout) -> list[HomeFile]:
    """Every kind of file f5guard reads back from home, valid, in place."""
    ckpts = home.checkpoints("voice")
    ckpts.mkdir(parents=True, exist_ok=True)
    ckpt = ckpts / durable_name(2, 40, "abcd1234")
    ckpt.write_bytes(b"x" * 64)
    other = RuntimeId("colab-b", "c" * 32, "pid:[9]", 31, 7)
    mine = RuntimeId("colab-a", "d" * 32, "pid:[8]", 30, 6)
    samples = home.samples_dir("voice")
    samples.mkdir(parents=True, exist_ok=True)
    (samples / "u40.wav").write_bytes(b"RIFF")
    files = [
        HomeFile(home.lease_dir / "state-e0002-colab-a.json", full_state(2, "colab-a", ckpt)),
        HomeFile(home.lease_dir / "state-e0001-colab-b.json", full_state(1, "colab-b", ckpt)),
        HomeFile(home.claims / f"{other.name}.json", claim(other, 3)),
        HomeFile(home.claims / f"{mine.name}.json", {**claim(mine, 2), "released": True}),
        HomeFile(
            ckpt.with_suffix(".json"),
            {
                "format": 2,
                "file": ckpt.name,
                "update": 40,
                "epoch": 2,
                "size": 64,
                "digest": "crc32:0000abcd",
                "synced_at": time.time() - 60,
                "source_name": "model_last.pt",
                "host": "vm",
            },
        ),
        HomeFile(
            home.progress_dir("voice") / "e0002-colab-a.jsonl",
            [
                {"event": "start", "t": 1.0, "pid": 5, "start_update": 0},
                *(
                    {"event": "update", "t": 1.0 + u, "pid": 5, "update": u, "loss": 1 / u, "lr": 1e-5}
                    for u in range(1, 6)
                ),
            ],
            lines=True,
        ),
        HomeFile(samples / "u40.json", {"update": 40, "seconds": 2.5, "text": "xin chào"}),
        HomeFile(home.epoch, {"epoch": 2}),
    ]
    for file in files:
        file.path.parent.mkdir(parents=True, exist_ok=True)
        file.path.write_bytes(file.text(file.tree))
    (home.claims / f"{other.name}.beat").write_text("")
    return files


# ---------------------------------------------------------------------------------------------- mutations
def slots(node: Any) -> list[tuple[Any, Any]]:
    found: list[tuple[Any, Any]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found.append((node, key))
        found.extend(slots(value))
    return found


def mutate_tree(tree: Any, rng: random.Random) -> tuple[Any, str]:
    tree = copy.deepcopy(tree)
    done = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        places = slots(tree)
        if not places or rng.random() < 0.05:
            tree = copy.deepcopy(rng.choice(HOSTILE))
            done.append("the whole document replaced")
            continue
        container, key = rng.choice(places)
        roll = rng.random()
        if roll < 0.65:
            if rng.random() < 0.03:
                depth = rng.choice((50, 900))  # deeper: the raw "nested" kind (json.dumps would recurse here)
                container[key] = deep(depth)
                done.append(f"{key!r} = a list nested {depth} deep")
            else:
                container[key] = copy.deepcopy(rng.choice(HOSTILE))
                done.append(f"{key!r} = {repr(container[key])[:40]}")
        elif roll < 0.85:
            del container[key]
            done.append(f"{key!r} deleted")
        elif isinstance(container, dict):
            container[rng.choice(["extra", "", "\0", "x" * 300])] = 1
            done.append("a key added")
    return tree, "; ".join(done)


def mutate_raw(file: HomeFile, rng: random.Random) -> str:
    """Replace the file by something that is not JSON, or not a regular file at all."""
    data = file.text(file.tree)
    file.path.unlink(missing_ok=True)
    kind = rng.choice(["truncated", "empty", "not utf-8", "nested", "huge", "fifo", "folder", "zero", "junk"])
    if kind == "truncated":
        file.path.write_bytes(data[: rng.randrange(1, max(2, len(data)))])
    elif kind == "empty":
        file.path.write_bytes(b"")
    elif kind == "not utf-8":
        file.path.write_bytes(data.replace(b'"', b'\xff"', 1))
    elif kind == "nested":
        file.path.write_bytes(b"[" * 200_000 + b"]" * 200_000 + (b"\n" if file.lines else b""))
    elif kind == "huge":
        with file.path.open("wb") as handle:  # sparse: 70 MB read as a state copy or claim would be memory
            handle.truncate(70 * 1024 * 1024)
    elif kind == "fifo":
        os.mkfifo(file.path)  # a reader that opens it blocks forever
    elif kind == "folder":
        file.path.mkdir()
    elif kind == "zero":
        file.path.symlink_to("/dev/zero")
    else:
        file.path.write_bytes(os.urandom(rng.randrange(1, 4000)))
    return kind


def restore(file: HomeFile) -> None:
    if file.path.is_dir() and not file.path.is_symlink():
        file.path.rmdir()
    else:
        file.path.unlink(missing_ok=True)
    file.path.write_bytes(file.text(file.tree))


# ---------------------------------------------------------------------------------------------- readers
def read_everything(config_path: Path) -> None:
    """Read home as `status`, a starting daemon and `plot` do; only F5guardError may leave."""
    config = load_config(config_path, find_python=False)
    home, work = HomeLayout(config.home), WorkLayout(config.work)
    report = build_report(config)
    render_status(report, make_console(160, file=io.StringIO(), color=False))
    to_json(report)  # what `status --json` prints
    store = StateStore(work.state, home.lease_dir, runtime="me")
    store.load()
    floor = max(store.highest_epoch(), highest_durable_epoch(home.checkpoints("voice")), highest_epoch_seen(home))
    assert 0 <= floor <= MAX_EPOCH, f"an epoch floor of {floor} taken from home"
    store.trainings("voice")
    records(home.checkpoints("voice"))
    list_durable(home.checkpoints("voice"))
    ClaimWatch(home, RuntimeId.here(), 30.0).look()
    progress_events(config, config.runs[0])


@pytest.fixture
def fuzz_home(tmp_path: Path) -> tuple[Path, list[HomeFile]]:
    home, work, config = tmp_path / "home", tmp_path / "work", tmp_path / "f5guard.toml"
    home.mkdir()
    work.mkdir()
    write_config(config, home, work, TRAIN)
    files = valid_home(HomeLayout(home))
    read_everything(config)  # the valid home reads cleanly: the baseline the mutations depart from
    return config, files


def test_hostile_home_files_never_raise(fuzz_home: tuple[Path, list[HomeFile]]) -> None:
    config, files = fuzz_home
    started, raw, refused = time.monotonic(), 0, 0
    for n in range(MUTATIONS):
        rng = random.Random(f"{SEED}-home-{n}")  # noqa: S311 - reproducible test data, not secrets
        file = rng.choice(files)
        if rng.random() < RAW_SHARE:
            what = f"{file.path.name}: raw {mutate_raw(file, rng)}"
            raw += 1
        else:
            tree, done = mutate_tree(file.tree, rng)
            file.path.write_bytes(file.text(tree) if not file.lines else _lines(file, tree))
            what = f"{file.path.name}: {done}"
        deadline = time.monotonic() + 20
        try:
            read_everything(config)
        except F5guardError as err:  # e.g. a state copy from a newer f5guard: one line, said
            refused += 1
            message = err.message
            assert "\n" not in message
        except Exception as err:  # noqa: BLE001 - the bug this test exists for: name the mutation
            pytest.fail(f"mutation {n} (seed {SEED}): {what} -> {type(err).__name__}: {str(err)[:300]}")
        assert time.monotonic() < deadline, f"mutation {n} (seed {SEED}): {what}: reading home took > 20 s"
        restore(file)
    print(f"{MUTATIONS} home mutations ({raw} raw), {refused} refused with one line, "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip


def _lines(file: HomeFile, tree: Any) -> bytes:
    """A progress copy mutated as a list of events; a mutation that made it something else is written whole."""
    if isinstance(tree, list):
        return ("\n".join(json.dumps(t) for t in tree) + "\n").encode()
    return json.dumps(tree).encode() + b"\n"


@pytest.mark.slow  # 36 rounds against a real daemon
def test_a_daemon_survives_a_hostile_home(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A real daemon with the torch-free trainer while home's files are mutated under it, its trainer killed
    now and then (restarts read home again) and the daemon itself restarted (startup reads it all). The daemon
    may stop only with a reason (a claim above its own is a takeover: "lease lost"), never by a crash."""
    p: Project = make_project("", name="p")
    p.config.write_text(p.config.read_text() + train_body(tmp_path, p.work))
    home = HomeLayout(p.home)
    p.cli("start", check=True)
    p.wait_for(lambda: training(p).get("durable_update"), timeout=60, what="a first durable checkpoint")
    files = [f for f in valid_home(home) if "colab-a" not in f.path.name]  # our own files stay ours
    rounds, lease_losses, statuses = 36, 0, 0
    for n in range(rounds):
        rng = random.Random(f"{SEED}-daemon-{n}")  # noqa: S311 - reproducible test data, not secrets
        for file in rng.sample(files, 3):
            if rng.random() < RAW_SHARE and not file.path.is_dir():
                mutate_raw(file, rng)
            else:
                if file.path.is_dir() and not file.path.is_symlink():
                    file.path.rmdir()
                tree, _ = mutate_tree(file.tree, rng)
                file.path.unlink(missing_ok=True)
                file.path.write_bytes(_lines(file, tree) if file.lines else file.text(tree))
        if n % 6 == 3:
            for proc in psutil.Process(p.daemon_pid()).children(recursive=True):  # the trainer dies: a restart
                proc.send_signal(signal.SIGKILL)
        time.sleep(0.3)
        status = p.cli("status")
        assert "Traceback" not in status.stdout + status.stderr, f"round {n}: {status.stderr[-2000:]}"
        statuses += 1
        pid = p.daemon_pid()
        gone = pid is None or not psutil.pid_exists(pid) or is_dead(psutil.Process(pid))
        if gone:
            last = p.status()["daemon"]["last_exit"]
            assert last is not None and not last["crashed"], f"round {n}: the daemon died: {last}"
            assert last["reason"].startswith("lease lost"), f"round {n}: {last}"
            lease_losses += 1
            p.cli("start", "--takeover", check=True)
        elif n % 12 == 11:
            p.cli("stop", "--timeout", "30", check=True)
            p.cli("start", check=True)  # a startup reads every state copy, claim and manifest
    p.cli("stop", "--timeout", "30", check=True)
    print(f"{rounds} rounds, {statuses} statuses, {lease_losses} takeovers by a hostile claim, 0 crashes")
