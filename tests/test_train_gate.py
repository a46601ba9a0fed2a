"""No idle minute at start: the trainer is launched while the lease settles, loads, and waits at its gate; it trains
and writes only once the daemon opens the gate, starts again from what home shows when that is newer, and is stopped
with the daemon that loses the lease meanwhile. The real daemon, with the torch-free F5-TTS stand-in of
tests/drive_runtime.py (a gated command: $F5GUARD_GATE); test_train_entry.py proves the real trainer waits too."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from f5guard.checkpoints.copying import file_digest
from f5guard.checkpoints.durable import DurableCheckpoint, durable_name, write_manifest
from f5guard.config import load_config
from f5guard.errors import ConfigError
from f5guard.schema import StageConfig
from f5guard.training.kind import TrainOptions
from tests.conftest import FAST_LEASE, Project, is_dead, pids_of_stage, wait_dead, write_config
from tests.drive_runtime import TRAINER, write_checkpoint


def gated(p: Path, settle_s: float) -> tuple[str, str]:
    """(config body, lease table) of one gated stand-in trainer: 20 ticks a second, a checkpoint every 5."""
    p.mkdir(parents=True, exist_ok=True)
    trainer = p / "trainer.py"
    trainer.write_text(TRAINER)
    argv = [sys.executable, str(trainer), str(p / "ckpts"), str(p / "events.jsonl"), "A", "0.05", "5", "4096"]
    body = f"""
[[runs]]
name = "voice"
[[runs.stages]]
name = "train"
type = "train"
mode = "command"
gated = true
checkpoint_dir = "{p / "ckpts"}"
hang_minutes = 0
stop_grace_s = 2
command = {json.dumps(argv)}
"""
    return body, FAST_LEASE.replace("settle_s = 0.3", f"settle_s = {settle_s}")


def events(root: Path) -> list[dict[str, Any]]:
    path = root / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def first(root: Path, kind: str) -> dict[str, Any] | None:
    return next((e for e in events(root) if e["ev"] == kind), None)


def claimed_at(p: Project) -> float:
    claims = [json.loads(c.read_text()) for c in (p.home / ".f5guard" / "claims").glob("*.json")]
    return max(c["since"] for c in claims if not c.get("released"))


def test_the_trainer_loads_while_the_lease_settles_and_trains_and_writes_only_after(make_project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    body, lease = gated(tmp_path, settle_s=4)
    p: Project = make_project(body, lease=lease)
    p.cli("start", check=True)
    ready = p.wait_for(lambda: first(tmp_path, "ready"), timeout=20, what="the trainer at its gate")
    assert isinstance(ready, dict)
    since = claimed_at(p)
    assert ready["t"] < since + 3, "launched during the settle period, not after it"
    waiting = p.status()["runs"][0]["training"]["waiting"]
    assert waiting.startswith("settling: training starts once no other runtime has shown up"), waiting
    assert "waits at its gate" in waiting
    assert not (tmp_path / "ckpts").exists() or not list((tmp_path / "ckpts").iterdir())
    assert first(tmp_path, "tick") is None

    p.wait_for(lambda: first(tmp_path, "save") or (tmp_path / "ckpts" / "model_last.pt").exists(), timeout=30,
               what="a checkpoint after the gate opened")  # fmt: skip
    opened = first(tmp_path, "gate_open")
    assert opened is not None and opened["t"] >= since + 4 - 0.5, "the gate opens when the settle period is over"
    ticks = [e for e in events(tmp_path) if e["ev"] == "tick"]
    assert ticks and ticks[0]["t"] >= opened["t"] and ticks[0]["u"] == 1
    assert (tmp_path / "ckpts" / "model_last.pt").stat().st_mtime >= opened["t"]
    assert len({e["attempt"] for e in events(tmp_path)}) == 1, "one launch, opened, never restarted"
    log = (p.work / "logs" / "voice" / "train.log").read_text()
    assert "settled: the trainer's gate is open" in log
    assert p.status()["runs"][0]["training"]["waiting"] is None


def test_home_newer_while_settling_starts_the_gated_trainer_again_from_it(make_project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Another runtime's checkpoint at update 50 reaches home while ours waits at its gate with nothing: it is not
    opened, it is started again from update 50 (never backwards), at no cost to the restart budget."""
    body, lease = gated(tmp_path, settle_s=3)
    p: Project = make_project(body, lease=lease)
    p.cli("start", check=True)
    p.wait_for(lambda: first(tmp_path, "ready"), timeout=20, what="the trainer at its gate")
    home = p.home / "runs" / "voice" / "checkpoints"
    newer = write_checkpoint(home / durable_name(1, 50, "0000beef"), 50)
    write_manifest(DurableCheckpoint(newer, newer.with_suffix(".json"), 50, 1, newer.stat().st_size,
                                     file_digest(newer), time.time(), "model_last.pt"))  # fmt: skip
    p.wait_for(lambda: any(e["ev"] == "tick" for e in events(tmp_path)), timeout=30, what="training")
    starts = [e for e in events(tmp_path) if e["ev"] == "start"]
    assert [s["u"] for s in starts] == [0, 50]
    ticks = [e for e in events(tmp_path) if e["ev"] == "tick"]
    assert {t["attempt"] for t in ticks} == {starts[1]["attempt"]}, "the first launch never trained"
    assert ticks[0]["u"] == 51
    stage = p.status()["runs"][0]["stages"][0]
    assert stage["restarts"] == 1 and "home now holds the checkpoint at update 50" in stage["last_failure"]


def test_losing_the_lease_while_settling_stops_the_gated_trainer(make_project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    body, lease = gated(tmp_path / "old", settle_s=60)
    old: Project = make_project(body, name="old", lease=lease)
    new: Project = make_project(gated(tmp_path / "new", 0.3)[0], name="new", home=old.home)
    old.cli("start", check=True)
    old.wait_for(lambda: first(tmp_path / "old", "ready"), timeout=20, what="the old trainer at its gate")
    daemon, trainer = psutil.Process(old.daemon_pid()), pids_of_stage(old)
    assert trainer
    new.cli("start", "--takeover", check=True)
    assert not wait_dead([daemon, *trainer], timeout=20), "the old daemon and its gated trainer stop"
    assert all(is_dead(t) for t in trainer)
    assert [e["ev"] for e in events(tmp_path / "old")] == ["start", "ready"], "it never trained"
    assert not (tmp_path / "old" / "ckpts").exists() or not list((tmp_path / "old" / "ckpts").iterdir())
    assert "lease lost" in (old.work / "logs" / "daemon.jsonl").read_text()


def test_the_gate_and_the_nan_guard_in_the_config(tmp_path: Path) -> None:
    """The built-in trainer is always gated (its spec names the gate; a config cannot); a command only when it
    says it waits ($F5GUARD_GATE in its environment); nan_patience is a train key with a one-line error."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("raw.arrow", "duration.json", "vocab.txt"):
        (data / name).write_text("")

    def load(stage: str) -> StageConfig:
        config = tmp_path / "f5guard.toml"
        write_config(config, tmp_path / "home", tmp_path / "work",
                     f'[[runs]]\nname = "voice"\n[[runs.stages]]\nname = "train"\ntype = "train"\n{stage}\n')  # fmt: skip
        return load_config(config).runs[0].stages[0]

    builtin = load(f'dataset = "{data}"\nnan_patience = 5')
    assert isinstance(builtin.options, TrainOptions) and builtin.options.gated
    assert builtin.options.spec is not None and builtin.options.spec.nan_patience == 5
    assert builtin.options.spec.gate_path is None, "the daemon sets it per attempt"
    command = 'mode = "command"\ncommand = ["true"]\ncheckpoint_dir = "c"\n'
    gated_command = load(command + "gated = true")
    assert isinstance(gated_command.options, TrainOptions)
    assert gated_command.env["F5GUARD_GATE"] == gated_command.options.gate_path
    assert "F5GUARD_GATE" not in load(command).env
    for stage, words in ((f'dataset = "{data}"\ngated = true', "gated: is only for mode = 'command'"),
                         (f'dataset = "{data}"\nnan_patience = 0', "stages[0].nan_patience: must be >= 1, got 0"),
                         (f'dataset = "{data}"\ngate_path = "x"', "gate_path")):  # fmt: skip
        with pytest.raises(ConfigError) as err:
            load(stage)
        assert words in err.value.message and "\n" not in err.value.message, err.value.message
