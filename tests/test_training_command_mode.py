"""`mode = "command"`: f5guard supervises a user's own F5-TTS command, reading progress from its tqdm bar and
syncing the checkpoints it writes; stopping takes down the whole group (dataloader workers included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from f5guard.trainer.spec import TrainSpec
from tests.conftest import Project, pids_of_stage, wait_dead

pytestmark = [pytest.mark.train, pytest.mark.slow]


def test_command_mode_progress_sync_and_group_stop(make_project, tiny_dataset: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ckpts = tmp_path / "p" / "work" / "user-ckpts"
    spec = tmp_path / "user-spec.json"
    TrainSpec(
        dataset_dir=tiny_dataset,
        checkpoint_dir=ckpts,
        progress_path=tmp_path / "ignored.jsonl",
        model="tiny",
        learning_rate=1e-4,
        batch_size_per_gpu=2,
        batch_size_type="sample",
        max_samples=2,
        epochs=50,
        num_warmup_updates=2,
        save_per_updates=10,
        last_per_updates=5,
        num_workers=1,
        threads=1,
        throttle_s=0.1,
    ).to_json(spec)
    p: Project = make_project(f"""
[[runs]]
name = "voice"
[[runs.stages]]
name = "train"
type = "train"
mode = "command"
checkpoint_dir = "{ckpts}"
command = ["{{python}}", "-m", "f5guard.trainer", "--spec", "{spec}"]
""")
    p.cli("start", check=True)

    def progressed() -> bool:
        t = p.status()["runs"][0]["training"] or {}
        return (t.get("update") or 0) >= 6 and t.get("durable_update") is not None

    p.wait_for(progressed, timeout=150, what="tqdm progress and a synced checkpoint")
    t = p.status()["runs"][0]["training"]
    assert t["total_updates"] == 200, "computed from the epoch bar: 4 updates per epoch x 50 epochs"
    assert t["loss"] is not None and t["durable_update"] % 5 == 0
    group = pids_of_stage(p)
    assert len(group) >= 2, "the trainer and its DataLoader worker"
    p.cli("stop", check=True)
    assert not wait_dead(group, timeout=10)
