"""The inference copy: `python -m f5guard.trainer.export` on real torch files, and when the daemon's exporter
decides to make one (torch-free)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from f5guard.checkpoints.durable import DurableCheckpoint, durable_name
from f5guard.training.exporter import EmaExporter, export_name, newest_export


def _durable(update: int) -> DurableCheckpoint:
    path = Path("/nowhere") / durable_name(1, update)
    return DurableCheckpoint(path, path.with_suffix(".json"), update, 1, 10, "0" * 64, 0.0, "model_last.pt")


def _export(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "f5guard.trainer.export", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_when_an_export_is_due(tmp_path: Path) -> None:
    (tmp_path / export_name(8)).write_bytes(b"x")
    (tmp_path / f".{export_name(16)}.123.ab.tmp").write_bytes(b"half")  # a temp never counts
    exporter = EmaExporter(tmp_path, 8, tmp_path / "export.log", log=lambda *_a, **_k: None)
    assert newest_export(tmp_path) == exporter.last and exporter.last is not None and exporter.last.update == 8
    assert not exporter.due(None) and not exporter.due(_durable(15))
    assert exporter.due(_durable(16)) and exporter.due(_durable(15), final=True)
    assert not exporter.due(_durable(8), final=True), "the final checkpoint is already copied"
    off = EmaExporter(tmp_path / "off", 0, tmp_path / "export.log", log=lambda *_a, **_k: None)
    assert not off.due(_durable(1000), final=True)


def test_usage() -> None:
    """argparse answers before torch is imported: no [train] extra needed."""
    usage = _export()
    assert usage.returncode == 2 and "usage:" in usage.stderr


@pytest.mark.train
def test_unreadable_sources_are_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "model_last.pt"
    garbage.write_bytes(b"not a zip at all")
    out = tmp_path / "out" / export_name(1)
    proc = _export(garbage, out, "--label", "ckpt-e0001-u000000001.pt")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("f5guard.trainer.export: could not read ckpt-e0001-u000000001.pt: ")
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.mark.train
def test_ema_only_half_precision(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    ema = {"initted": torch.tensor(True), "step": torch.tensor(7), "ema_model.w": torch.randn(3, 4)}
    src = tmp_path / "model_7.pt"
    torch.save({"update": 7, "model_state_dict": {"w": torch.randn(3, 4)}, "ema_model_state_dict": ema}, src)
    out = tmp_path / "export" / export_name(7)
    proc = _export(src, out)
    assert proc.returncode == 0, proc.stderr
    copy = torch.load(out, weights_only=True)
    assert set(copy) == {"ema_model_state_dict", "update"} and copy["update"] == 7
    assert copy["ema_model_state_dict"]["ema_model.w"].dtype == torch.float16
    assert torch.equal(copy["ema_model_state_dict"]["ema_model.w"], ema["ema_model.w"].half())
    assert copy["ema_model_state_dict"]["step"].dtype == torch.int64
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]

    no_ema = tmp_path / "model_8.pt"
    torch.save({"update": 8, "model_state_dict": {"w": torch.randn(2)}}, no_ema)
    proc = _export(no_ema, tmp_path / "export" / export_name(8))
    assert proc.returncode == 1 and "holds no ema_model_state_dict" in proc.stderr


def test_after_a_restart_from_scratch_and_stale_temps(tmp_path: Path) -> None:
    """A new vocab restarts training at update 0: the old copy (u80) must not hold exports back until u88.
    A temp left by an export killed with its daemon is removed."""
    (tmp_path / export_name(80)).write_bytes(b"x")
    stale = tmp_path / f".{export_name(88)}.4242.beef.tmp"
    stale.write_bytes(b"half")
    exporter = EmaExporter(tmp_path, 8, tmp_path / "export.log", log=lambda *_a, **_k: None)
    assert not stale.exists()
    assert not exporter.due(_durable(4)) and exporter.due(_durable(8))


def test_home_unreachable_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    blocker = tmp_path / "export"
    blocker.write_text("a file where the export folder should be")
    events: list[str] = []
    exporter = EmaExporter(blocker, 8, tmp_path / "export.log", log=lambda event, **_k: events.append(event))
    exporter.poll(_durable(8))  # mkdir fails: no exception out of the control loop
    assert exporter.error is not None and "export.error" in events
    assert exporter.public()["error"] == exporter.error and exporter.public()["update"] is None


@pytest.mark.train
def test_a_failed_export_is_reported_once_and_not_retried(tmp_path: Path) -> None:
    """Through the real subprocess: the inherited descriptor, the label in the message, no retry (the child
    imports torch to read it)."""
    source = tmp_path / durable_name(1, 8)
    source.write_bytes(b"not a checkpoint")
    durable = DurableCheckpoint(source, source.with_suffix(".json"), 8, 1, 16, "0" * 64, 0.0, "model_last.pt")
    events: list[str] = []
    exporter = EmaExporter(tmp_path / "export", 8, tmp_path / "export.log", log=lambda e, **_k: events.append(e))
    exporter.poll(durable)
    assert exporter.public()["running"] == 8
    assert exporter.wait(240)
    assert exporter.error is not None and exporter.error.startswith(
        f"update 8: f5guard.trainer.export: could not read {source.name}"
    )
    exporter.poll(durable)
    assert events == ["export.start", "export.failed"], "the same update is not tried again"
    assert exporter.due(_durable(16))


@pytest.mark.train
def test_the_source_may_be_deleted_once_the_export_started(tmp_path: Path) -> None:
    """keep_durable=1 deletes the old durable checkpoint as soon as a newer one is verified: the export holds
    it open and still reads it."""
    torch = pytest.importorskip("torch")
    source = tmp_path / "checkpoints" / durable_name(1, 8)
    source.parent.mkdir()
    torch.save({"update": 8, "ema_model_state_dict": {"ema_model.w": torch.ones(5)}}, source)
    durable = DurableCheckpoint(source, source.with_suffix(".json"), 8, 1, source.stat().st_size, "0" * 64, 0.0, "x")
    exporter = EmaExporter(tmp_path / "export", 8, tmp_path / "export.log", log=lambda *_a, **_k: None)
    exporter.poll(durable)
    source.unlink()  # before the child has even imported torch
    assert exporter.wait(240) and exporter.error is None, (tmp_path / "export.log").read_text()[-1000:]
    assert exporter.last is not None and exporter.last.update == 8
    copy = torch.load(exporter.last.path, weights_only=True)
    assert torch.equal(copy["ema_model_state_dict"]["ema_model.w"], torch.ones(5, dtype=torch.float16))
