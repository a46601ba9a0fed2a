"""The built-in training entry, run for real: tiny F5-TTS model, real Trainer, real signals, offline, CPU."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from f5guard.checkpoints.inspect import inspect_checkpoint
from f5guard.trainer.spec import SpecError, TrainSpec
from f5guard.trainevents import EventWriter, Gate, Start, Update, read_events
from tests.drive_runtime import write_checkpoint
from tests.f5_fixtures import TrainRun, train_env

StartTraining = Callable[..., TrainRun]


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind]


def _saved_update(path: Path) -> int:
    """The update inside a checkpoint, read by torch itself (not by the code under test)."""
    script = f"import torch; print(torch.load({str(path)!r}, weights_only=True, map_location='cpu')['update'])"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    return int(out.stdout.strip())


@pytest.mark.train
def test_full_run_reports_every_event(start_training: StartTraining) -> None:
    """A run to completion: start at 0, updates, a checkpoint event per file F5-TTS wrote, exit `finished`."""
    run = start_training(epochs=2)  # 8 clips / batch 2 = 4 updates an epoch
    assert run.wait() == 0, run.tail()
    events = run.events()
    start = _of(events, "start")[0]
    assert start["start_update"] == 0
    assert start["total_updates"] == 8
    assert start["updates_per_epoch"] == 4
    assert start["checkpoint"] is None
    updates = _of(events, "update")
    assert updates[-1]["update"] == 8
    assert all(u["loss"] is not None and u["lr"] is not None for u in updates)
    assert [u["update"] for u in updates] == sorted({u["update"] for u in updates})
    saves = {(c["file"], c["update"]) for c in _of(events, "checkpoint")}
    assert {
        ("model_last.pt", 2),
        ("model_last.pt", 4),
        ("model_4.pt", 4),
        ("model_8.pt", 8),
        ("model_last.pt", 8),
    } <= saves
    reported = {u["update"] for u in updates}
    assert {update for _, update in saves} <= reported  # the update stream is exact at every save
    assert _of(events, "exit")[-1] == {**_of(events, "exit")[-1], "reason": "finished", "update": 8}
    ckpts = run.spec_path.parent / "ckpts"
    assert inspect_checkpoint(ckpts / "model_last.pt").update == 8
    assert inspect_checkpoint(ckpts / "model_4.pt").update == 4


@pytest.mark.train
def test_sigkill_then_resume_restores_everything(start_training: StartTraining) -> None:
    """SIGKILL after model_last.pt at update k: the rerun starts at k with equal weights, EMA, Adam state."""
    run = start_training(epochs=4, throttle_s=0.5)
    event = run.wait_for(lambda e: e["event"] == "checkpoint" and e["file"] == "model_last.pt" and e["update"] >= 4)
    run.kill()
    ckpts = run.spec_path.parent / "ckpts"
    k = _saved_update(ckpts / "model_last.pt")
    assert k >= event["update"]  # the next save is >= 1 s away (throttle_s): normally k == event["update"]

    rerun = start_training(epochs=4, env={"F5GUARD_TRAIN_VERIFY_RESUME": "1"})
    assert rerun.wait() == 0, rerun.tail()
    events = rerun.events()
    assert _of(events, "start")[0]["start_update"] == k
    assert _of(events, "start")[0]["checkpoint"] == "model_last.pt"
    check = _of(events, "resume_check")[0]
    assert check["update"] == k
    assert check["model_equal"]
    assert check["ema_equal"]
    assert check["optimizer_equal"]
    assert check["scheduler_equal"]
    assert check["adam_step"] == k
    assert _of(events, "update")[0]["update"] > k
    assert _of(events, "exit")[-1]["reason"] == "finished"
    assert _of(events, "exit")[-1]["update"] == 16


@pytest.mark.train
@pytest.mark.parametrize("target", ["process", "group"])
def test_sigterm_saves_the_last_finished_update(start_training: StartTraining, target: str) -> None:
    """SIGTERM (to the trainer, or to its whole group with the DataLoader worker): exit 0, model_last.pt holds
    exactly the last finished update, and the next run starts there: a graceful stop loses no update."""
    run = start_training(epochs=4, last_per_updates=100, save_per_updates=100, throttle_s=0.3)
    run.wait_for(lambda e: e["event"] == "update" and e["update"] >= 3)
    if target == "group":
        run.signal_group(signal.SIGTERM)
    else:
        run.proc.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 0, run.tail()
    events = run.events()
    stopped = _of(events, "exit")[-1]
    assert (stopped["reason"], stopped["detail"]) == ("stopped", "sigterm")
    last_update = max(e["update"] for e in _of(events, "update"))
    assert stopped["update"] == last_update
    assert _of(events, "checkpoint")[-1] == {
        **_of(events, "checkpoint")[-1],
        "file": "model_last.pt",
        "update": last_update,
    }
    ckpts = run.spec_path.parent / "ckpts"
    assert _saved_update(ckpts / "model_last.pt") == last_update

    rerun = start_training(epochs=4)
    assert rerun.wait() == 0, rerun.tail()
    assert _of(rerun.events(), "start")[0]["start_update"] == last_update
    assert _of(rerun.events(), "exit")[-1]["reason"] == "finished"


@pytest.mark.train
def test_timed_saves_between_update_intervals(start_training: StartTraining) -> None:
    """save_every_minutes writes model_last.pt even when last_per_updates is never reached."""
    run = start_training(
        epochs=2, last_per_updates=1000, save_per_updates=1000, throttle_s=0.2, save_every_minutes=0.01
    )
    assert run.wait() == 0, run.tail()
    timed = [c for c in _of(run.events(), "checkpoint") if c["last"] and c["update"] < 8]
    assert len(timed) >= 2, run.events()


@pytest.mark.train
def test_truncated_model_last_is_quarantined_and_training_resumes(start_training: StartTraining) -> None:
    """A model_last.pt cut short by a crash is renamed aside; training resumes from the newest valid file."""
    run = start_training(epochs=1, last_per_updates=2, save_per_updates=2)
    assert run.wait() == 0, run.tail()
    ckpts = run.spec_path.parent / "ckpts"
    last = ckpts / "model_last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])

    rerun = start_training(epochs=2, last_per_updates=2, save_per_updates=2)
    assert rerun.wait() == 0, rerun.tail()
    start = _of(rerun.events(), "start")[0]
    assert start["start_update"] == 4  # model_4.pt, the newest valid file
    assert [q["name"] for q in start["quarantined"]] == ["model_last.pt"]
    assert any(p.name.startswith("model_last.pt.corrupt-") for p in ckpts.iterdir())
    assert _of(rerun.events(), "exit")[-1]["update"] == 8


@pytest.mark.train
def test_checkpoint_loads_with_f5tts_inference(start_training: StartTraining, tiny_dataset: Path) -> None:
    """F5-TTS's own inference loader reads the entry's checkpoint (EMA and raw weights) and samples a mel."""
    run = start_training(epochs=1)
    assert run.wait() == 0, run.tail()
    ckpt = run.spec_path.parent / "ckpts" / "model_last.pt"
    script = textwrap.dedent(f"""
        import torch
        from f5_tts.infer.utils_infer import load_model
        from f5_tts.model import DiT
        from f5guard.trainer.presets import dit_kwargs
        for use_ema in (True, False):
            vocab = {str(tiny_dataset / "vocab.txt")!r}
            model = load_model(DiT, dit_kwargs("tiny"), {str(ckpt)!r}, vocab_file=vocab,
                               use_ema=use_ema, device="cpu")
            mel, _ = model.sample(cond=torch.randn(1, 40, 100), text=["xin chào"], duration=80, steps=2)
            assert mel.shape == (1, 80, 100), mel.shape
        print("ok")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"dataset_dir": "d", "checkpoint_dir": "c"}', "missing required field(s) progress_path"),
        (
            '{"dataset_dir": "d", "checkpoint_dir": "c", "progress_path": "p", "model": "huge"}',
            "model must be one of tiny, small, base, got 'huge'",
        ),
        (
            '{"dataset_dir": "d", "checkpoint_dir": "c", "progress_path": "p", "num_workers": 0}',
            "num_workers must be >= 1",
        ),
        (
            '{"dataset_dir": "d", "checkpoint_dir": "c", "progress_path": "p", "epochs": "3"}',
            "epochs must be an integer, got '3'",
        ),
        ('{"dataset_dir": "d", "checkpoint_dir": "c", "progress_path": "p", "lr": 1}', "unknown field(s) lr"),
    ],
)
def test_bad_spec_is_one_line_exit_2(tmp_path: Path, content: str, message: str) -> None:
    """A bad spec: exit 2 and one stderr line naming the spec file and the field; torch is never imported."""
    spec = tmp_path / "spec.json"
    spec.write_text(content, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "f5guard.trainer", "--spec", str(spec)],
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(spec) in lines[0]
    assert message in lines[0]


def test_missing_dataset_is_reported_in_progress(tmp_path: Path) -> None:
    """A valid spec whose dataset is missing: exit 2, one line, and an `exit` event the daemon can show."""
    progress = tmp_path / "progress.jsonl"
    spec = tmp_path / "spec.json"
    TrainSpec(dataset_dir=tmp_path / "nope", checkpoint_dir=tmp_path / "c", progress_path=progress).to_json(spec)
    result = subprocess.run(
        [sys.executable, "-m", "f5guard.trainer", "--spec", str(spec)],
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "missing raw.arrow" in result.stderr
    (event,) = [json.loads(line) for line in progress.read_text().splitlines()]
    assert (event["event"], event["reason"]) == ("exit", "error")
    assert "missing raw.arrow" in event["detail"]


@pytest.mark.train
def test_pretrained_is_placed_and_loaded(start_training: StartTraining, tmp_path: Path) -> None:
    """spec.pretrained and no checkpoint yet: placed as pretrained_*, F5-TTS starts from it at update 0."""
    first = start_training(epochs=1, checkpoint_dir=str(tmp_path / "first"))
    assert first.wait() == 0, first.tail()
    source = tmp_path / "base_model.pt"  # EMA weights only, like the released F5-TTS model files
    script = (
        f"import torch; c = torch.load({str(tmp_path / 'first' / 'model_last.pt')!r}, weights_only=True); "
        f"torch.save({{'ema_model_state_dict': c['ema_model_state_dict']}}, {str(source)!r})"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    run = start_training(epochs=1, checkpoint_dir=str(tmp_path / "second"), pretrained=str(source))
    assert run.wait() == 0, run.tail()
    start = _of(run.events(), "start")[0]
    assert start["checkpoint"] == "pretrained_base_model.pt"
    assert start["start_update"] == 0
    assert _of(run.events(), "exit")[-1]["update"] == 4
    assert any("pretrained_base_model.pt" in a for a in start["actions"])


@pytest.mark.train
def test_a_gated_trainer_loads_then_waits_before_its_first_step_and_first_write(
    start_training: StartTraining, tmp_path: Path
) -> None:
    """The daemon launches it while the lease settles: everything is loaded at `ready`; no update, no file in
    the checkpoint dir until the gate's file exists; then it trains as usual."""
    gate = tmp_path / "gate-open"
    run = start_training(gate_path=str(gate))
    ready = run.wait_for(lambda e: e["event"] == "ready")
    assert ready["start_update"] == 0 and ready["startup_s"] > 0
    time.sleep(1.5)
    assert [e["event"] for e in run.events()] == ["ready"]
    ckpts = tmp_path / "ckpts"
    assert not ckpts.exists() or not list(ckpts.iterdir())
    Gate(gate).open()
    run.wait_for(lambda e: e["event"] == "update")
    assert run.wait() == 0, run.tail()
    kinds = [e["event"] for e in run.events()]
    assert kinds[:2] == ["ready", "start"] and kinds[-1] == "exit"
    assert _of(run.events(), "exit")[-1]["reason"] == "finished"


@pytest.mark.train
def test_a_stop_at_the_gate_ends_it_with_nothing_written(start_training: StartTraining, tmp_path: Path) -> None:
    """Placing the pretrained model is a write: a trainer that must place one waits before it (and before it
    loads); stopped there (a lost lease), it exits at once, gracefully, having written nothing."""
    pretrained = write_checkpoint(tmp_path / "base_model.pt", 0)
    run = start_training(gate_path=str(tmp_path / "gate-open"), pretrained=str(pretrained))
    ready = run.wait_for(lambda e: e["event"] == "ready")
    assert ready["start_update"] is None and ready["checkpoint"] is None
    run.signal_group(signal.SIGTERM)
    assert run.wait() == 0, run.tail()
    assert [(e["event"], e.get("reason")) for e in run.events()] == [("ready", None), ("exit", "stopped")]
    ckpts = tmp_path / "ckpts"
    assert not ckpts.exists() or not list(ckpts.iterdir()), "not even the pretrained model was placed"


# ----------------------------------------------------------------------------- torch-free parts
def test_spec_round_trip(tmp_path: Path) -> None:
    """to_json/from_json keep every field; paths come back as Path objects; defaults are F5-TTS's."""
    spec = TrainSpec(
        dataset_dir=tmp_path / "d",
        checkpoint_dir=tmp_path / "c",
        progress_path=tmp_path / "p",
        model="small",
        pretrained=tmp_path / "x.safetensors",
        threads=2,
    )
    spec.to_json(tmp_path / "spec.json")
    document = json.loads((tmp_path / "spec.json").read_text())
    assert document["version"] == 1
    assert document["pretrained"] == str(tmp_path / "x.safetensors")
    assert document["tokenizer_path"] is None
    again = TrainSpec.from_json(tmp_path / "spec.json")
    assert again == spec
    assert again.vocab_path == tmp_path / "d" / "vocab.txt"
    assert (again.save_every_minutes, again.num_workers, again.throttle_s) == (10.0, 1, 0.0)


def test_spec_errors_are_one_line_naming_the_field(tmp_path: Path) -> None:
    """Direct construction and from_json both give one SpecError line; exit code 2 (a config error)."""
    with pytest.raises(SpecError, match=r"^training spec: save_every_minutes must be >= 0"):
        TrainSpec(dataset_dir="d", checkpoint_dir="c", progress_path="p", save_every_minutes=-1)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"dataset_dir": "d", "checkpoint_dir": "c", "progress_path": "p", "threads": 0}))
    with pytest.raises(SpecError) as caught:
        TrainSpec.from_json(path)
    assert str(caught.value) == f"training spec {path}: threads must be >= 1, got 0"
    assert caught.value.exit_code == 2


def test_light_modules_do_not_import_torch() -> None:
    """The daemon imports the spec, progress reader and hooks module: torch must stay out."""
    modules = ", ".join(f"f5guard.trainer.{m}" for m in ("spec", "presets", "hooks", "group", "__main__"))
    script = f"import sys, f5guard.trainer, f5guard.trainevents, {modules}; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_progress_survives_a_torn_line(tmp_path: Path) -> None:
    """A line cut by SIGKILL is skipped; the next writer starts on a fresh line; a partial tail waits."""
    path = tmp_path / "progress.jsonl"
    path.write_text('{"event": "update", "update": 1}\n{"event": "upd')
    writer = EventWriter(path)
    writer.emit(Start(start_update=1))
    writer.close()
    events, offset = read_events(path)
    assert events == [Update(update=1), Start(start_update=1)]
    with path.open("a") as handle:
        handle.write('{"event": "exit"')
    more, offset2 = read_events(path, offset)
    assert more == []
    assert offset2 == offset
