"""A CUDA out-of-memory under the real daemon (injected with F5GUARD_TEST_OOM into the real trainer on a CPU): the
next attempt runs with half the batch and twice the gradient accumulation, a daemon restart keeps it, status says
what changed and why, and below the floor the run is FATAL with one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from f5guard.trainer.batches import longest_clip_frames
from tests.conftest import Project

pytestmark = [pytest.mark.train, pytest.mark.slow]


def body(dataset: Path, *, oom: str, epochs: int = 3) -> str:
    """Frame batches of 400 over 8 clips of 94-188 frames: 3 batches an epoch; 200 frames: 7."""
    return f"""
[[runs]]
name = "voice"
[[runs.stages]]
name = "train"
type = "train"
dataset = "{dataset}"
model = "tiny"
learning_rate = 1e-4
batch_size_per_gpu = 400
batch_size_type = "frame"
max_samples = 4
epochs = {epochs}
num_warmup_updates = 2
save_per_updates = 4
last_per_updates = 2
num_workers = 1
threads = 1
throttle_s = 0.1
env = {{ F5GUARD_TEST_OOM = "{oom}", TQDM_DISABLE = "1" }}
[runs.stages.restart]
backoff_initial_s = 0.2
"""


def events(p: Project) -> list[dict[str, Any]]:
    path = p.work / "runs" / "voice" / "train" / "progress.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip().startswith("{")]


def starts(p: Project) -> list[dict[str, Any]]:
    return [e for e in events(p) if e["event"] == "start"]


def test_oom_halves_the_batch_keeps_it_across_a_daemon_restart_and_finishes(  # type: ignore[no-untyped-def]
    make_project, tiny_dataset: Path
) -> None:
    p: Project = make_project(body(tiny_dataset, oom="update=3,above=200"))
    p.cli("start", check=True)
    p.wait_for(lambda: len(starts(p)) >= 2, timeout=300, what="the attempt after the OOM")
    first, second = starts(p)[:2]
    assert (first["setup"]["batch_size_per_gpu"], first["setup"]["grad_accumulation_steps"]) == (400, 1)
    assert (second["setup"]["batch_size_per_gpu"], second["setup"]["grad_accumulation_steps"]) == (200, 2)
    oom_exit = next(e for e in events(p) if e["event"] == "exit")
    assert oom_exit["reason"] == "cuda_oom" and "OutOfMemoryError: CUDA out of memory" in oom_exit["detail"]
    assert second["start_update"] == 2, "resumed from the checkpoint before the OOM"
    spec = json.loads((p.work / "runs" / "voice" / "train" / "spec.json").read_text())
    assert (spec["batch_size_per_gpu"], spec["grad_accumulation_steps"]) == (200, 2), "the spec the attempt ran"

    before_stop = p.status()["runs"][0]
    assert before_stop["stages"][0]["restarts"] == 1, "one OOM, one restart: not 'the same failure twice'"
    override = before_stop["training"]["batch_override"]
    assert override["from_batch"] == 400 and override["batch_size_per_gpu"] == 200
    assert override["grad_accumulation_steps"] == 2 and override["reason"] == "CUDA out of memory at update 2"
    text = p.cli("status").stdout
    assert "batch 400 -> 200 frames x grad_accum 2 after CUDA out of memory at update 2" in " ".join(text.split())

    # A daemon restart (a new Colab session on the same VM) keeps the smaller batch: the state holds it.
    p.cli("stop", check=True)
    p.cli("start", check=True)
    run = p.wait_run("voice", timeout=400)
    later = starts(p)[2:]
    assert later, "the restarted daemon started the trainer again"
    assert all((s["setup"]["batch_size_per_gpu"], s["setup"]["grad_accumulation_steps"]) == (200, 2) for s in later)
    finished = [e for e in events(p) if e["event"] == "exit"][-1]
    assert finished["reason"] == "finished"
    stage = run["stages"][0]
    assert stage["state"] == "done"
    assert run["training"]["setup"]["batch_size_per_gpu"] == 200


def test_oom_at_the_floor_is_fatal_with_one_line(make_project, tiny_dataset: Path) -> None:  # type: ignore[no-untyped-def]
    """400 -> 200 frames still runs out of memory; 100 would be below the longest clip (188 frames): FATAL."""
    p: Project = make_project(body(tiny_dataset, oom="update=1,above=100", epochs=1))
    p.cli("start", check=True)
    run = p.wait_run("voice", ("fatal",), timeout=400)
    reason = run["stages"][0]["reason"]
    assert "\n" not in reason
    assert reason.startswith("CUDA out of memory at update 0 with batch 200 frames x grad_accum 2, and half of it"), (
        reason
    )
    floor = longest_clip_frames(tiny_dataset)
    assert 100 < floor <= 200, floor  # 2.0 s clips: 188 frames
    assert f"(100 frames) is below the floor of {floor} frames (the longest clip" in reason, reason
    assert [s["setup"]["batch_size_per_gpu"] for s in starts(p)] == [400, 200]
