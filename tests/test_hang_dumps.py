"""A hung training's stacks land in the stage log as one labelled block per process, never interleaved: a
SIGSTOP'd trainer with a real torch DataLoader worker, and a launcher with two ranks. The processes are small
stand-ins that register exactly as the trainer entry does (trainer/stackdump.py, trainer/workers.py); the real
trainer's hang under the daemon is test_training_group.py's hung-rank test."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from f5guard.redact import Redactor
from f5guard.stages.stagelog import StageLog
from f5guard.trainer import stackdump
from f5guard.training.hangdump import dump_stacks

ROOT = Path(__file__).resolve().parent.parent

WORKER = """
import sys, time
from f5guard.trainer import stackdump, workers
stackdump.register(stackdump.role_here())
import torch.utils.data

class Clips(torch.utils.data.Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, index):
        return worker_loads_a_clip(index)

def worker_loads_a_clip(index):
    time.sleep(600)

def trainer_waits_for_a_batch(loader):
    return next(iter(loader))

workers.shield_workers()
trainer_waits_for_a_batch(torch.utils.data.DataLoader(Clips(), num_workers=1))
"""

GROUP = """
import os, subprocess, sys, time
from f5guard.trainer import stackdump
stackdump.register(stackdump.role_here())

def rank_waits_in_a_collective():
    time.sleep(600)

def launcher_waits_for_its_ranks(procs):
    for proc in procs:
        proc.wait()

if "RANK" in os.environ:
    rank_waits_in_a_collective()
else:
    stackdump.name_role("launcher of 2 ranks")
    procs = [subprocess.Popen([sys.executable, __file__], env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2"})
             for r in range(2)]
    procs.append(subprocess.Popen(["sleep", "600"]))  # a helper that is no Python: said, not dumped
    launcher_waits_for_its_ranks(procs)
"""


def _start(script: Path, stage_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **stackdump.stage_env(stage_dir), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _registered(stage_dir: Path, count: int, timeout: float = 60) -> dict[int, dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = stackdump.read_registry(stackdump.stack_dir(stage_dir))
        if len(found) >= count and all("worker" in d["role"] or "rank" in d["role"] or "launcher" in d["role"]
                                       for d in found.values() if d["role"] != "trainer"):  # fmt: skip
            return found
        time.sleep(0.1)
    raise AssertionError(f"{count} processes never registered: {found}")


def _log(path: Path) -> StageLog:
    return StageLog(path, max_bytes=10_000_000, backups=1, redactor=Redactor())


def _blocks(text: str) -> dict[int, tuple[str, list[str]]]:
    """pid -> (header, the block's lines); fails on any block not closed before the next opens."""
    blocks: dict[int, tuple[str, list[str]]] = {}
    lines = [re.sub(r"^\S+ \[f5guard\] ?", "", x) for x in text.splitlines()]  # the stage log's time and mark
    i = 0
    while i < len(lines):
        head = re.fullmatch(r"===== stacks of pid (\d+) · (.*) =====", lines[i])
        if head is None:
            i += 1
            continue
        pid = int(head.group(1))
        end = lines.index(f"===== end of the stacks of pid {pid} =====", i)
        body = lines[i + 1 : end]
        assert not any(x.startswith("===== ") for x in body), f"block of pid {pid} interleaved: {body}"
        blocks[pid] = (head.group(2), body)
        i = end + 1
    return blocks


def test_a_stopped_trainer_and_its_dataloader_worker_give_one_labelled_block_each(tmp_path: Path, started) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    script, stage_dir = tmp_path / "hung_trainer.py", tmp_path / "train"
    script.write_text(WORKER)
    trainer = _start(script, stage_dir)
    started.append(trainer)
    notes = _registered(stage_dir, 2)
    worker = next(pid for pid, d in notes.items() if d["role"] == "DataLoader worker of trainer")
    assert psutil.Process(worker).ppid() == trainer.pid
    time.sleep(0.5)  # both in their waits
    os.kill(trainer.pid, signal.SIGSTOP)

    log = _log(tmp_path / "train.log")
    assert dump_stacks(trainer.pid, stage_dir, log, py_spy="") == 2
    log.close()
    blocks = _blocks((tmp_path / "train.log").read_text())
    assert set(blocks) == {trainer.pid, worker}
    head, body = blocks[trainer.pid]
    assert head.startswith("trainer · ") and head.endswith("· was stopped (SIGSTOP)"), head
    assert any("trainer_waits_for_a_batch" in x for x in body) and not any("worker_loads_a_clip" in x for x in body)
    head, body = blocks[worker]
    assert head.startswith("DataLoader worker of trainer · "), head
    assert any("worker_loads_a_clip" in x for x in body) and any(x.startswith("Current thread 0x") for x in body), body
    assert psutil.Process(trainer.pid).status() == psutil.STATUS_STOPPED, "left stopped, as it was found"


def test_a_launcher_and_two_ranks_give_one_labelled_block_each(tmp_path: Path, started) -> None:  # type: ignore[no-untyped-def]
    script, stage_dir = tmp_path / "hung_group.py", tmp_path / "train"
    script.write_text(GROUP)
    launcher = _start(script, stage_dir)
    started.append(launcher)
    notes = _registered(stage_dir, 3)
    ranks = {d["role"]: pid for pid, d in notes.items() if d["role"].startswith("rank")}
    assert set(ranks) == {"rank 0 of 2", "rank 1 of 2"} and notes[launcher.pid]["role"] == "launcher of 2 ranks"
    time.sleep(0.3)
    os.kill(ranks["rank 1 of 2"], signal.SIGSTOP)  # the hung rank

    log = _log(tmp_path / "train.log")
    log.feed(b"Epoch 1/1: 40%| | 4/10 [00:01<00:02]\n")  # the stage's own output around the dump
    assert dump_stacks(launcher.pid, stage_dir, log, py_spy="") == 4
    log.close()
    text = (tmp_path / "train.log").read_text()
    assert "Epoch 1/1: 40%" in text.splitlines()[0]
    blocks = _blocks(text)
    helper = next(pid for pid, (head, _) in blocks.items() if head.endswith("· sleep 600"))
    assert set(blocks) == {launcher.pid, helper, *ranks.values()}
    assert blocks[helper][0].startswith("not an f5guard trainer process")
    assert blocks[helper][1][0].startswith("no stacks: it did not register")
    for role, pid in [("launcher of 2 ranks", launcher.pid), *ranks.items()]:
        head, body = blocks[pid]
        assert head.startswith(f"{role} · "), head
        wanted = "launcher_waits_for_its_ranks" if role.startswith("launcher") else "rank_waits_in_a_collective"
        assert sum(wanted in x for x in body) == 1 and all(
            "rank_waits" not in x for x in body if role.startswith("launcher")
        ), body
    assert blocks[ranks["rank 1 of 2"]][0].endswith("was stopped (SIGSTOP)")


def test_py_spy_reads_the_running_processes_and_faulthandler_the_stopped_one(tmp_path: Path, started) -> None:  # type: ignore[no-untyped-def]
    """Where py-spy is installed it dumps each running process from outside; it cannot suspend a stopped one,
    whose block then comes from its faulthandler file."""
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        pytest.skip("py-spy is not installed (the test extra has it)")
    script, stage_dir = tmp_path / "hung_group.py", tmp_path / "train"
    script.write_text(GROUP)
    launcher = _start(script, stage_dir)
    started.append(launcher)
    notes = _registered(stage_dir, 3)
    ranks = {d["role"]: pid for pid, d in notes.items() if d["role"].startswith("rank")}
    time.sleep(0.3)
    os.kill(ranks["rank 1 of 2"], signal.SIGSTOP)
    log = _log(tmp_path / "train.log")
    assert dump_stacks(launcher.pid, stage_dir, log, py_spy=py_spy) == 4
    log.close()
    blocks = _blocks((tmp_path / "train.log").read_text())
    head, body = blocks[ranks["rank 0 of 2"]]
    assert head.startswith("rank 0 of 2 · ") and head.endswith("· py-spy"), head
    assert any("rank_waits_in_a_collective" in x for x in body), body
    assert blocks[launcher.pid][0].endswith("· py-spy")
    head, body = blocks[ranks["rank 1 of 2"]]
    assert head.endswith("was stopped (SIGSTOP)") and any("rank_waits_in_a_collective" in x for x in body), head
