"""The decisions behind mixed precision, "auto" batches and the OOM halving, without torch or a GPU: precision by
compute capability, the frame budget table, the halving floor, the torch-free GPU check the config uses, the
config keys, and what status says about them."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from f5guard.config import load_config
from f5guard.errors import ConfigError
from f5guard.machine import cuda_gpu_visible
from f5guard.state import BatchOverride, StateDoc, TrainingRecord, doc_from_json
from f5guard.status.render import _training_lines, make_console
from f5guard.trainer.batches import CPU_FRAMES, auto_frames, clip_frames, longest_clip_frames
from f5guard.trainer.hardware import Hardware, check_bnb, resolve, resolve_precision
from f5guard.trainer.spec import SpecError, TrainSpec
from f5guard.trainevents import EventWriter, SetupNote, Start
from f5guard.training import oom
from f5guard.training.progress import EventReader, fold

CPU = Hardware(device="cpu", cuda=False)
T4 = Hardware(device="Tesla T4", cuda=True, capability=(7, 5), memory_gib=14.7)
V100 = Hardware(device="Tesla V100-SXM2-16GB", cuda=True, capability=(7, 0), memory_gib=15.8)
A100_80 = Hardware(device="NVIDIA A100-SXM4-80GB", cuda=True, capability=(8, 0), memory_gib=79.3)


def spec(tmp_path: Path, **fields: object) -> TrainSpec:
    return TrainSpec(dataset_dir=tmp_path, checkpoint_dir=tmp_path / "c", progress_path=tmp_path / "p", **fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- precision
def test_auto_precision_follows_compute_capability() -> None:
    assert resolve_precision("auto", A100_80) == "bf16"
    assert resolve_precision("auto", T4) == "fp16"
    assert resolve_precision("auto", V100) == "fp16"
    assert resolve_precision("auto", CPU) == "no"
    assert resolve_precision("bf16", CPU) == "bf16", "CPU autocast does bf16: how the tests train"
    assert resolve_precision("no", A100_80) == "no"


def test_fp16_and_8bit_adam_refuse_a_cpu(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"^mixed_precision 'fp16' needs a CUDA GPU") as err:
        resolve_precision("fp16", CPU)
    assert err.value.exit_code == 2 and "\n" not in err.value.message
    with pytest.raises(SpecError, match="bnb_optimizer = true needs a CUDA GPU"):
        check_bnb(spec(tmp_path, bnb_optimizer=True), CPU)
    check_bnb(spec(tmp_path), CPU)  # off: nothing to check


# ---------------------------------------------------------------------------------------------- "auto" batches
def test_auto_frames_follow_f5tts_figures() -> None:
    """Anchored on F5TTS_v1_Base.yaml's 38400 frames on an 80 GB A100 (bf16), less 15 % headroom."""
    a100 = auto_frames("base", 79.3, "bf16")
    assert 0.8 * 38400 <= a100 < 38400 and a100 % 100 == 0
    t4 = auto_frames("base", 14.7, "fp16")
    assert 3200 <= t4 <= 4400, t4  # the finetune UI's 3200 default is what people run on a T4
    assert auto_frames("base", 79.3, "no") == pytest.approx(a100 / 2, abs=100), "fp32 activations: half the frames"
    assert auto_frames("small", 14.7, "fp16") > t4
    assert auto_frames("base", None, "no") == CPU_FRAMES
    assert auto_frames("base", 6.0, "fp16", longest_clip_frames=2813) == 2813, "never below the longest clip"


def test_resolve_makes_every_auto_concrete(tmp_path: Path) -> None:
    (tmp_path / "duration.json").write_text(json.dumps({"duration": [1.0, 2.0, 29.5]}))
    assert longest_clip_frames(tmp_path) == clip_frames(29.5) == 2766
    auto = spec(tmp_path, model="base", batch_size_per_gpu="auto", mixed_precision="auto")
    resolved, setup = resolve(auto, A100_80)
    assert resolved.mixed_precision == "bf16" and resolved.batch_size_per_gpu == auto_frames("base", 79.3, "bf16")
    assert setup.batch_auto is True and setup.device == "NVIDIA A100-SXM4-80GB" and setup.gpu_memory_gib == 79.3
    fixed, setup = resolve(spec(tmp_path, batch_size_per_gpu=1000, mixed_precision="fp16"), T4)
    assert (fixed.batch_size_per_gpu, fixed.mixed_precision, setup.batch_auto) == (1000, "fp16", False)


def test_spec_validates_the_new_fields(tmp_path: Path) -> None:
    cases = [
        ({"batch_size_per_gpu": "auto", "batch_size_type": "sample"}, "can be 'auto' only with batch_size_type"),
        ({"batch_size_per_gpu": "lots"}, "batch_size_per_gpu must be an integer or 'auto', got 'lots'"),
        ({"mixed_precision": "fp32"}, "mixed_precision must be one of auto, no, fp16, bf16, got 'fp32'"),
        ({"bnb_optimizer": "yes"}, "bnb_optimizer must be true or false"),
    ]
    for fields, needle in cases:
        with pytest.raises(SpecError, match=needle):
            TrainSpec.from_dict({"dataset_dir": "d", "checkpoint_dir": "c", "progress_path": "p", **fields})
    back = TrainSpec.from_dict(spec(tmp_path, batch_size_per_gpu="auto", bnb_optimizer=True).to_dict())
    assert back.batch_size_per_gpu == "auto" and back.bnb_optimizer is True and back.mixed_precision == "auto"


# ---------------------------------------------------------------------------------------------- OOM halving
def test_halving_keeps_the_effective_batch_down_to_the_floor() -> None:
    floor = oom.batch_floor("frame", longest_clip_frames=188)
    assert floor == 188
    step = oom.halve(3200, 1, floor, "frame")
    assert step == oom.Halved(batch=1600, accum=2)
    assert oom.describe(3200, 1, step, "frame") == "batch 3200 -> 1600 frames x grad_accum 2"
    assert oom.halve(400, 2, floor, "frame") == oom.Halved(batch=200, accum=4)
    at_floor = oom.halve(200, 4, floor, "frame")
    assert isinstance(at_floor, oom.AtFloor)
    assert "half of it (100 frames) is below the floor of 188 frames (the longest clip" in at_floor.why
    assert oom.batch_floor("frame", 0) == oom.MIN_FRAMES, "no duration.json: a fixed minimum"
    assert oom.batch_floor("sample", 188) == 1
    assert oom.halve(2, 1, 1, "sample") == oom.Halved(batch=1, accum=2)
    assert isinstance(oom.halve(1, 2, 1, "sample"), oom.AtFloor)


# ---------------------------------------------------------------------------------------------- the torch-free GPU check
def test_gpu_check_without_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = tmp_path / "gpus"
    gpus.mkdir()
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    monkeypatch.setenv("PATH", str(empty_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cuda_gpu_visible(gpus) is False
    (gpus / "0000:00:04.0").mkdir()  # what the NVIDIA driver lists per GPU
    assert cuda_gpu_visible(gpus) is True
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert cuda_gpu_visible(gpus) is False
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    (gpus / "0000:00:04.0").rmdir()
    smi = empty_path / "nvidia-smi"  # a container without the /proc folder: nvidia-smi -L still lists the GPU
    smi.write_text("#!/bin/sh\necho 'GPU 0: Tesla T4 (UUID: GPU-1234)'\n")
    smi.chmod(0o755)
    assert cuda_gpu_visible(gpus) is True


# ---------------------------------------------------------------------------------------------- config keys
def _config(tmp_path: Path, keys: str) -> Path:
    (tmp_path / "home").mkdir(exist_ok=True)
    path = tmp_path / "f5guard.toml"
    path.write_text(
        f'home = "{tmp_path}/home"\nwork = "{tmp_path}/work"\n[[runs]]\nname = "r"\n[[runs.stages]]\n'
        f'name = "t"\ntype = "train"\ndataset = "data"\n{keys}\n'
    )
    return path


def test_config_keys_reach_the_spec(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, 'mixed_precision = "bf16"\nbatch_size_per_gpu = "auto"'))
    train_spec = config.runs[0].stages[0].options.spec  # type: ignore[attr-defined]
    assert train_spec.mixed_precision == "bf16" and train_spec.batch_size_per_gpu == "auto"
    assert train_spec.bnb_optimizer is False
    with pytest.raises(ConfigError, match=r"runs\[0\]\.stages\[0\]\.batch_size_per_gpu: must be an integer or 'auto'"):
        load_config(_config(tmp_path, 'batch_size_per_gpu = "lots"'))
    with pytest.raises(ConfigError, match=r"runs\[0\]\.stages\[0\]\.bnb_optimizer: expected"):
        load_config(_config(tmp_path, 'bnb_optimizer = "yes"'))
    with pytest.raises(ConfigError, match=r"stages\[0\]\.batch_size_per_gpu: can be 'auto' only with batch_size_type"):
        load_config(_config(tmp_path, 'batch_size_per_gpu = "auto"\nbatch_size_type = "sample"'))


@pytest.mark.parametrize(
    ("keys", "needle"),
    [
        ('mixed_precision = "fp16"', "runs[0].stages[0].mixed_precision: 'fp16' needs a CUDA GPU"),
        ("bnb_optimizer = true", "runs[0].stages[0].bnb_optimizer: true needs a CUDA GPU"),
    ],
)
def test_gpu_only_keys_without_a_gpu_stop_start_with_one_line(tmp_path: Path, keys: str, needle: str) -> None:
    """`f5guard start` on a machine without CUDA (hidden here): exit 2, one line naming the key, no daemon; and
    `status` still works there (a Colab VM that came back without a GPU must still show the run)."""
    path = _config(tmp_path, keys)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "f5guard", "start", "--config", str(path)], capture_output=True, text=True,
        timeout=60, env=env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and str(path) in lines[0], proc.stderr
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").rglob("*.pid"))
    status = subprocess.run(
        [sys.executable, "-m", "f5guard", "status", "--config", str(path)], capture_output=True, text=True,
        timeout=60, env=env,
    )  # fmt: skip
    assert status.returncode == 1 and status.stderr == "", "status still reads the config on a VM without a GPU"
    assert "run r · pending" in status.stdout


# ---------------------------------------------------------------------------------------------- progress and status
SETUP = SetupNote(
    precision="bf16", precision_requested="auto", device="NVIDIA A100-SXM4-80GB", gpu_memory_gib=79.3,
    batch_size_per_gpu=32300, batch_size_type="frame", batch_auto=True, grad_accumulation_steps=1,
    bnb_optimizer=False,
)  # fmt: skip


def test_start_event_setup_folds_into_the_record(tmp_path: Path) -> None:
    """The trainer's start event reaches the record typed (no dict parsed on the way), and survives state.json."""
    path = tmp_path / "progress.jsonl"
    reader = EventReader(path)
    writer = EventWriter(path)
    writer.emit(Start(start_update=0, setup=SETUP))
    writer.close()
    record = TrainingRecord()
    for event in reader.poll():
        fold(record, event)
    assert record.setup == SETUP
    doc = StateDoc()
    doc.run("r").training = record
    again = doc_from_json(json.loads(json.dumps(doc.to_json())))
    assert again.runs["r"].training is not None and again.runs["r"].training.setup == SETUP


def _status_text(record: TrainingRecord) -> str:
    from f5guard.status.report import TrainingReport

    fields = {k: getattr(record, k) for k in TrainingReport.__annotations__ if hasattr(record, k)}
    report = TrainingReport(**{**dict.fromkeys(TrainingReport.__annotations__), **fields, "quarantined": []})  # type: ignore[typeddict-item]
    buffer = io.StringIO()
    console = make_console(200, file=buffer, color=False)
    for line in _training_lines(report):
        console.print(line)
    return buffer.getvalue()


def test_status_says_precision_device_and_what_f5guard_changed() -> None:
    record = TrainingRecord(setup=SETUP)
    record.batch_override = BatchOverride(
        batch_size_per_gpu=1600, grad_accumulation_steps=2, from_batch=3200, from_accum=1, batch_size_type="frame",
        update=12, reason="CUDA out of memory at update 12", at=0.0, config_batch=3200, config_accum=1,
    )  # fmt: skip
    text = _status_text(record)
    assert "precision bf16 on NVIDIA A100-SXM4-80GB (auto)" in text
    assert "batch 32300 frames (auto for 79.3 GiB) x grad_accum 1" in text
    assert "batch 3200 -> 1600 frames x grad_accum 2 after CUDA out of memory at update 12" in text
    cpu = dataclasses.replace(SETUP, precision="no", device="cpu", batch_auto=False, batch_size_per_gpu=4,
                              batch_size_type="sample")  # fmt: skip
    assert "precision fp32 on cpu (auto) · batch 4 samples x grad_accum 1" in _status_text(TrainingRecord(setup=cpu))


def test_new_keys_at_their_defaults_leave_the_identity_as_it_was(tmp_path: Path) -> None:
    """An upgraded f5guard must not see a finished training as changed: defaults stay out of the fingerprint."""
    plain = load_config(_config(tmp_path, "")).runs[0].stages[0].identity
    explicit = load_config(_config(tmp_path, 'mixed_precision = "auto"\nbnb_optimizer = false')).runs[0].stages[0]
    assert plain is not None and plain == explicit.identity
    assert "mixed_precision" not in plain["spec"] and "bnb_optimizer" not in plain["spec"]
    changed = load_config(_config(tmp_path, 'mixed_precision = "bf16"')).runs[0].stages[0].identity
    assert changed is not None and changed["spec"]["mixed_precision"] == "bf16"
