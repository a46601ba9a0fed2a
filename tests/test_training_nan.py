"""A loss gone NaN under the real daemon (injected with F5GUARD_TEST_NAN into the real trainer on a CPU, bf16): the
trainer stops without saving, the next attempt runs in fp32 from the last finite checkpoint and finishes, a daemon
restart keeps fp32, status says what changed and why, no checkpoint with NaN weights reaches home; and when fp32
goes NaN too, the run is FATAL with one line naming the update and the learning rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from f5guard.checkpoints.durable import list_durable
from f5guard.checkpoints.finite import nonfinite
from tests.conftest import Project

pytestmark = [pytest.mark.train, pytest.mark.slow]


def body(dataset: Path, *, nan: str, epochs: int = 3) -> str:
    """Batches of 2 samples over 8 clips: 4 updates an epoch; a checkpoint every 2."""
    return f"""
[[runs]]
name = "voice"
[[runs.stages]]
name = "train"
type = "train"
dataset = "{dataset}"
model = "tiny"
mixed_precision = "bf16"
learning_rate = 1e-4
batch_size_per_gpu = 2
batch_size_type = "sample"
max_samples = 2
epochs = {epochs}
num_warmup_updates = 2
save_per_updates = 4
last_per_updates = 2
num_workers = 1
threads = 1
throttle_s = 0.1
env = {{ F5GUARD_TEST_NAN = "{nan}", TQDM_DISABLE = "1" }}
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


def test_nan_in_bf16_continues_in_fp32_from_the_last_finite_checkpoint(  # type: ignore[no-untyped-def]
    make_project, tiny_dataset: Path
) -> None:
    p: Project = make_project(body(tiny_dataset, nan="update=3,precision=bf16"))
    p.cli("start", check=True)
    p.wait_for(lambda: len(starts(p)) >= 2, timeout=300, what="the attempt after the NaN")
    first, second = starts(p)[:2]
    assert (first["setup"]["precision"], second["setup"]["precision"]) == ("bf16", "no")
    nan_exit = next(e for e in events(p) if e["event"] == "exit")
    assert nan_exit["reason"] == "nonfinite" and nan_exit["update"] == 3 and nan_exit["detail"] == "a non-finite loss"
    assert 0 < nan_exit["lr"] <= 1e-4
    nan_updates = [e["update"] for e in events(p) if e["event"] == "update" and e["loss_nonfinite"]]
    assert nan_updates and min(nan_updates) == 3
    saved_bf16 = [e["update"] for e in events(p)[: events(p).index(nan_exit)] if e["event"] == "checkpoint"]
    assert saved_bf16 == [2], "nothing saved once the loss went NaN (the save at update 4 was refused)"
    assert second["start_update"] == 2, "resumed from the last finite checkpoint"

    run = p.status()["runs"][0]
    assert run["stages"][0]["restarts"] == 1
    override = run["training"]["precision_override"]
    assert (override["from_precision"], override["precision"], override["update"]) == ("bf16", "no", 3)
    assert override["reason"] == "a non-finite loss at update 3" and override["lr"] == nan_exit["lr"]
    text = " ".join(p.cli("status").stdout.split())
    assert "precision bf16 -> fp32 after a non-finite loss at update 3 (learning rate" in text

    # A daemon restart (a new Colab session on the same VM) keeps fp32: the state holds it.
    p.cli("stop", check=True)
    p.cli("start", check=True)
    run = p.wait_run("voice", timeout=400)
    later = starts(p)[2:]
    assert later and all(s["setup"]["precision"] == "no" for s in later)
    assert [e for e in events(p) if e["event"] == "exit"][-1]["reason"] == "finished"
    durables = list_durable(p.home / "runs" / "voice" / "checkpoints")
    assert durables and all(nonfinite(d.path) is None for d in durables)
    assert run["training"]["precision_override"]["precision"] == "no"


def test_nan_in_fp32_too_is_fatal_with_one_line(make_project, tiny_dataset: Path) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(body(tiny_dataset, nan="update=3", epochs=2))
    p.cli("start", check=True)
    run = p.wait_run("voice", ("fatal",), timeout=400)
    reason = run["stages"][0]["reason"]
    assert "\n" not in reason
    assert reason.startswith("a non-finite loss at update 3, learning rate "), reason
    assert reason.endswith(", in fp32 too: then it is the data or the learning rate"), reason
    assert [s["setup"]["precision"] for s in starts(p)] == ["bf16", "no"]
