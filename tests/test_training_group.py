"""num_processes = 2 under the real daemon: two CPU ranks over gloo (real DDP through F5-TTS's accelerate) on the
tiny model. Only rank 0 reports, one process group, a killed rank restarts the whole group from the newest
checkpoint with identical state, and `f5guard stop` ends every rank with 0 updates lost."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from f5guard.checkpoints.inspect import inspect_checkpoint
from tests.conftest import Project, kill9, wait_dead
from tests.test_training_supervised import body, events, home_ckpts, last_update, trainer_pid

pytestmark = [pytest.mark.train, pytest.mark.slow, pytest.mark.timeout(900)]  # two ranks start slowly

UPDATES_PER_EPOCH = 2  # 8 clips, 2 per batch, split over 2 ranks
TWO_RANKS = "num_processes = 2\nstop_grace_s = 120"  # two ranks starting on a busy 2-core box: be patient


def ranks(launcher: psutil.Process) -> dict[int, psutil.Process]:
    """The launcher's rank processes by RANK (their DataLoader workers are the ranks' children, not these)."""
    found: dict[int, psutil.Process] = {}
    for child in launcher.children():
        env = child.environ()
        if "RANK" in env:
            found[int(env["RANK"])] = child
    return found


def exits(p: Project) -> list[dict[str, Any]]:
    return [e for e in events(p) if e["event"] == "exit"]


def test_two_ranks_train_report_once_and_stop_losing_nothing(make_project, tiny_dataset) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(body(tiny_dataset, epochs=60, extra=TWO_RANKS))
    p.cli("start", check=True)
    p.wait_for(lambda: last_update(p) >= 4, timeout=400, what="update 4")
    launcher = psutil.Process(trainer_pid(p))
    group = ranks(launcher)
    assert sorted(group) == [0, 1]
    assert {os.getpgid(r.pid) for r in group.values()} == {os.getpgid(launcher.pid)}, "one process group"
    assert {e["pid"] for e in events(p)} == {group[0].pid}, "only rank 0 writes progress"
    start = next(e for e in events(p) if e["event"] == "start")
    assert start["processes"] == 2 and start["updates_per_epoch"] == UPDATES_PER_EPOCH
    assert start["total_updates"] == 60 * UPDATES_PER_EPOCH, "the real count, not F5-TTS's single-process one"
    p.wait_for(lambda: (p.status()["runs"][0]["training"] or {}).get("processes") == 2, timeout=30, what="status")
    assert "2 processes" in p.cli("status").stdout

    p.cli("stop", check=True)
    assert not wait_dead([launcher, *group.values()], timeout=60), "every rank exits with the launcher"
    stop = exits(p)[-1]
    assert (stop["reason"], stop["detail"]) == ("stopped", "sigterm") and stop["pid"] == group[0].pid
    saved = inspect_checkpoint(p.work / "runs" / "voice" / "ckpts" / "model_last.pt").update
    assert saved == stop["update"] == last_update(p), "0 updates lost"
    manifests = sorted(home_ckpts(p).glob("ckpt-*.json"))
    assert manifests and f"-u{saved:09d}-" in manifests[-1].name, "the stop's checkpoint is on home"
    checkpoint_pids = {e["pid"] for e in events(p) if e["event"] == "checkpoint"}
    assert checkpoint_pids == {group[0].pid}


def test_killed_rank_restarts_the_group_from_the_newest_checkpoint(make_project, tiny_dataset) -> None:  # type: ignore[no-untyped-def]
    epochs = 6
    p: Project = make_project(body(tiny_dataset, epochs=epochs, extra=TWO_RANKS))
    p.cli("start", check=True)

    def fresh_checkpoint() -> bool:
        saved = [e for e in events(p) if e["event"] == "checkpoint"]
        return bool(saved) and saved[-1]["update"] >= 4 and events(p)[-1]["event"] == "checkpoint"

    p.wait_for(fresh_checkpoint, timeout=400, what="a checkpoint at update >= 4")  # the next save is updates away
    launcher = psutil.Process(trainer_pid(p))
    group = ranks(launcher)
    kill9(group[1].pid)
    assert not wait_dead([launcher, group[0]], timeout=60), "rank 1's death takes the group down"
    run = p.wait_run("voice", timeout=600)

    first = [e for e in events(p) if e["pid"] == group[0].pid]
    saved_before = max(e["update"] for e in first if e["event"] == "checkpoint")
    down = next(e for e in exits(p) if e["pid"] == launcher.pid)
    assert down["reason"] == "rank_failed", down
    assert down["detail"].startswith(f"rank 1 (pid {group[1].pid}) was killed by SIGKILL"), down
    starts = [e for e in events(p) if e["event"] == "start"]
    assert len(starts) == 2 and starts[1]["processes"] == 2
    assert starts[1]["start_update"] == saved_before, "resumed from the newest checkpoint written"
    check = next(e for e in events(p) if e["event"] == "resume_check")
    assert check["ranks"] == 2 and check["update"] == saved_before
    assert check["model_equal"] and check["ema_equal"] and check["optimizer_equal"] and check["scheduler_equal"]
    assert check["adam_step"] == saved_before
    finished = exits(p)[-1]
    assert finished["reason"] == "finished" and finished["update"] == epochs * UPDATES_PER_EPOCH
    assert run["stages"][0]["restarts"] == 1
    assert "killed by SIGKILL" in run["stages"][0]["last_failure"]
    assert run["training"]["durable_update"] == epochs * UPDATES_PER_EPOCH


@pytest.mark.parametrize("signalled", [1, 0])
def test_a_stop_seen_by_one_rank_stops_all_at_one_update(start_training, signalled: int) -> None:  # type: ignore[no-untyped-def]
    """The subtle case: SIGTERM reaches only one rank (the other would carry on into the next update). The
    ranks agree at the update boundary, save there together and exit 0; the launcher exits 0."""
    run = start_training(num_processes=2, epochs=60, throttle_s=0.15, last_per_updates=3)
    read = lambda: [json.loads(x) for x in run.progress_path.read_text().splitlines() if x.startswith("{")]  # noqa: E731
    deadline = time.monotonic() + 400
    while not any(e["event"] == "update" and e["update"] >= 4 for e in (read() if run.progress_path.exists() else [])):
        assert run.proc.poll() is None and time.monotonic() < deadline, run.tail()
        time.sleep(0.1)
    group = ranks(psutil.Process(run.pid))
    os.kill(group[signalled].pid, signal.SIGTERM)
    assert run.wait(timeout=120) == 0, run.tail()
    assert not wait_dead(list(group.values()), timeout=10)
    events_ = read()
    stop = [e for e in events_ if e["event"] == "exit"][-1]
    assert stop["pid"] == group[0].pid
    assert stop["reason"] == "stopped"
    assert stop["detail"] == ("sigterm" if signalled == 0 else "a stop seen by another rank")
    updates = [e["update"] for e in events_ if e["event"] in ("update", "checkpoint")]
    saved = inspect_checkpoint(Path(run.spec_path).parent / "ckpts" / "model_last.pt").update
    assert saved == stop["update"] == max(updates), "0 updates lost"


def test_hung_rank_restarts_the_group(make_project, tiny_dataset) -> None:  # type: ignore[no-untyped-def]
    """A rank that stops answering (SIGSTOP) stalls the other in its next collective: no progress for
    hang_minutes, stacks dumped, the whole group (the stopped rank too) replaced, training resumed and finished."""
    epochs = 5
    extra = "num_processes = 2\nstop_grace_s = 20\nhang_minutes = 2.5"  # above two ranks' start on a busy box
    p: Project = make_project(body(tiny_dataset, epochs=epochs, extra=extra))
    p.cli("start", check=True)
    p.wait_for(lambda: last_update(p) >= 4, timeout=400, what="update 4")
    launcher = psutil.Process(trainer_pid(p))
    group = ranks(launcher)
    os.kill(group[1].pid, signal.SIGSTOP)
    assert not wait_dead([launcher, *group.values()], timeout=400), "the hung group is replaced"
    run = p.wait_run("voice", timeout=600)
    starts = [e for e in events(p) if e["event"] == "start"]
    assert len(starts) == 2 and starts[1]["start_update"] >= 4
    assert exits(p)[-1]["reason"] == "finished" and exits(p)[-1]["update"] == epochs * UPDATES_PER_EPOCH
    assert run["stages"][0]["restarts"] == 1
    log = (p.work / "logs" / "voice" / "train.log").read_text()
    assert "no training progress" in log
    # one labelled block per process of the hung group, the stopped rank's too (test_hang_dumps.py: the format)
    roles = [r.strip() for r in re.findall(r"===== stacks of pid \d+ · ([^·]+) ·", log)]
    assert {"launcher of 2 ranks", "rank 0 of 2", "rank 1 of 2"} <= set(roles), roles
    assert any(r.startswith("DataLoader worker of rank") for r in roles), roles
    assert re.search(r"===== stacks of pid \d+ · rank 1 of 2 · .* · was stopped \(SIGSTOP\) =====", log)
