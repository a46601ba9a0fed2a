"""A checkpoint whose weights hold a NaN or an infinity is never published to home, never resumed from and never
restored (checkpoints/finite.py reads the weights without torch): real torch.save files, real sync and restore."""
# ruff: noqa: F811  (pytest fixtures imported from tests.sync_support come back as parameters)

from __future__ import annotations

from pathlib import Path

import pytest

from f5guard.checkpoints import finite
from f5guard.checkpoints.copying import file_digest
from f5guard.checkpoints.durable import DurableCheckpoint, durable_name, list_durable, restore, write_manifest
from f5guard.checkpoints.inspect import LAST_NAME
from f5guard.checkpoints.resume import prepare_resume
from f5guard.checkpoints.sync import CheckpointSync
from tests.sync_support import CheckpointMaker, Recorder, maker  # noqa: F401 - fixtures

pytestmark = pytest.mark.train


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
def test_a_nan_or_an_infinity_is_found_in_every_float_format_and_the_largest_finite_value_is_not(
    maker: CheckpointMaker, tmp_path: Path, dtype: str
) -> None:
    for value, broken in ((None, False), ("max", False), ("nan", True), ("inf", True), ("-inf", True)):
        path = maker.make(tmp_path / f"model_{value}.pt", 4, value=value, dtype=dtype)
        reason = finite.nonfinite(path)
        assert (reason is not None) == broken, (value, reason)
        if broken:
            assert reason == f"{path.name} holds non-finite weights (NaN or infinity, first in ema_model_state_dict.w)"


def test_resume_sets_a_non_finite_newest_checkpoint_aside_and_picks_the_newest_finite_one(
    maker: CheckpointMaker, tmp_path: Path
) -> None:
    """F5-TTS always loads model_last.pt: one full of NaN (an older f5guard, a user's own command) would train
    garbage for hours; it is quarantined (kept) and the finite model_4.pt is what resumes."""
    local = tmp_path / "ckpts"
    local.mkdir()
    maker.make(local / "model_4.pt", 4)
    maker.make(local / LAST_NAME, 6, value="nan")
    plan = prepare_resume(local)
    assert plan.chosen is not None and plan.chosen.update == 4
    assert [q.name for q in plan.quarantined] == [LAST_NAME]
    assert "holds non-finite weights" in plan.quarantined[0].reason
    assert sorted(p.name for p in local.iterdir() if not p.name.startswith(f"{LAST_NAME}.corrupt-")) == ["model_4.pt"]


def test_sync_publishes_the_newest_finite_checkpoint_and_says_why_not_the_newer_one(
    maker: CheckpointMaker, tmp_path: Path
) -> None:
    local, home = tmp_path / "ckpts", tmp_path / "home"
    local.mkdir()
    maker.make(local / "model_4.pt", 4)
    maker.make(local / LAST_NAME, 6, value="inf")
    log = Recorder()
    syncer = CheckpointSync(local, home, epoch=1, log=log)
    assert syncer.flush(30)
    assert [d.update for d in list_durable(home)] == [4]
    assert syncer.status().warning == (
        "model_last.pt holds non-finite weights (NaN or infinity, first in ema_model_state_dict.w): "
        "not published to home"
    )
    assert [f["update"] for name, f in log.events if name == "sync.nonfinite"] == [6]


def test_restore_skips_a_non_finite_checkpoint_on_home_and_never_replaces_a_newer_local_one(
    maker: CheckpointMaker, tmp_path: Path
) -> None:
    """Home holds u4 (finite) and u8 (NaN, as an older f5guard published it). A fresh VM restores u4; a VM that
    already holds u6 keeps it (the fallback below u8 stops at what is here); u8 is copied only once."""
    home, fresh, ahead = tmp_path / "home", tmp_path / "fresh", tmp_path / "ahead"
    home.mkdir()
    for update, value in ((4, None), (8, "nan")):
        path = maker.make(home / durable_name(1, update, "01d0f5a1"), update, value=value)
        write_manifest(DurableCheckpoint(path, path.with_suffix(".json"), update, 1, path.stat().st_size,
                                         file_digest(path), 0.0, LAST_NAME))  # fmt: skip
    assert [d.update for d in list_durable(home)] == [4, 8]
    log = Recorder()
    restored = restore(home, fresh, log=log)
    assert restored is not None and restored.update == 4
    assert finite.nonfinite(fresh / LAST_NAME) is None
    skipped = [f for name, f in log.events if name == "restore.skip"]
    assert len(skipped) == 1 and "holds non-finite weights" in skipped[0]["reason"]

    ahead.mkdir()
    maker.make(ahead / LAST_NAME, 6)
    before = (ahead / LAST_NAME).read_bytes()
    u8 = list_durable(home)[-1].path
    u8.write_bytes(bytes(u8.stat().st_size))  # were it copied again, it would fail as "content differs"
    again = Recorder()
    assert restore(home, ahead, log=again, above=6) is None
    assert (ahead / LAST_NAME).read_bytes() == before
    assert [f["reason"] for name, f in again.events if name == "restore.skip"] == [skipped[0]["reason"]]
