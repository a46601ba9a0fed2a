"""Mixed precision in the built-in trainer, for real on a CPU (bf16 autocast): the start event says what ran, a
SIGKILL and resume restore fp32 weights, EMA and Adam state exactly; fp16 and 8-bit Adam without a GPU are one
line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.f5_fixtures import TrainRun

StartTraining = Callable[..., TrainRun]


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind]


def _saved_update(path: Path) -> int:
    script = f"import torch; print(torch.load({str(path)!r}, weights_only=True, map_location='cpu')['update'])"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    return int(out.stdout.strip())


@pytest.mark.train
def test_bf16_sigkill_then_resume_restores_fp32_state(start_training: StartTraining) -> None:
    """bf16 autocast really runs (accelerate's native_amp), and what the checkpoint holds is the fp32 master state:
    the resumed model, EMA and Adam moments equal the file bit for bit, in float32."""
    run = start_training(epochs=4, throttle_s=0.5, mixed_precision="bf16")
    setup = run.wait_for(lambda e: e["event"] == "start")["setup"]
    assert setup["precision"] == "bf16" and setup["precision_requested"] == "bf16"
    assert setup["autocast"] is True, "accelerate wraps the forward in torch.autocast(bfloat16)"
    assert setup["device"] == "cpu" and setup["gpu_memory_gib"] is None
    assert setup["batch_size_per_gpu"] == 2 and setup["batch_auto"] is False and setup["bnb_optimizer"] is False
    event = run.wait_for(lambda e: e["event"] == "checkpoint" and e["file"] == "model_last.pt" and e["update"] >= 4)
    run.kill()
    ckpts = run.spec_path.parent / "ckpts"
    k = _saved_update(ckpts / "model_last.pt")
    assert k >= event["update"]

    rerun = start_training(epochs=4, mixed_precision="bf16", env={"F5GUARD_TRAIN_VERIFY_RESUME": "1"})
    assert rerun.wait() == 0, rerun.tail()
    events = rerun.events()
    assert _of(events, "start")[0]["start_update"] == k
    check = _of(events, "resume_check")[0]
    assert check["update"] == k and check["adam_step"] == k
    assert check["model_equal"] and check["ema_equal"] and check["optimizer_equal"] and check["scheduler_equal"]
    for part in ("model", "ema", "optimizer"):
        floats = {d for d in check["dtypes"][part] if "float" in d}
        assert floats == {"float32"}, f"{part} must be kept in fp32 under bf16 autocast: {check['dtypes']}"
    assert _of(events, "exit")[-1]["reason"] == "finished" and _of(events, "exit")[-1]["update"] == 16


@pytest.mark.train
def test_auto_on_a_cpu_is_fp32_with_the_cpu_batch(start_training: StartTraining) -> None:
    """mixed_precision "auto" without CUDA is "no"; batch "auto" is the CPU default, reported as auto."""
    run = start_training(
        epochs=1, mixed_precision="auto", batch_size_per_gpu="auto", batch_size_type="frame", max_samples=2
    )
    assert run.wait() == 0, run.tail()
    setup = _of(run.events(), "start")[0]["setup"]
    assert setup["precision"] == "no" and setup["precision_requested"] == "auto" and setup["autocast"] is False
    assert setup["batch_size_per_gpu"] == 3200 and setup["batch_auto"] is True and setup["batch_size_type"] == "frame"


@pytest.mark.train
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mixed_precision": "fp16"}, "mixed_precision 'fp16' needs a CUDA GPU"),
        ({"bnb_optimizer": True}, "bnb_optimizer = true needs a CUDA GPU"),
    ],
)
def test_gpu_only_settings_without_cuda_exit_2(
    start_training: StartTraining, fields: dict[str, Any], message: str
) -> None:
    """The trainer sees no CUDA (hidden with CUDA_VISIBLE_DEVICES): one line, exit 2, the reason in progress."""
    run = start_training(env={"CUDA_VISIBLE_DEVICES": ""}, **fields)
    assert run.wait() == 2
    log = run.log_path.read_text(encoding="utf-8", errors="replace")
    said = [line for line in log.splitlines() if line.startswith("f5guard.trainer:")]
    assert len(said) == 1 and message in said[0], log[-3000:]
    assert "Traceback" not in log
    assert message in _of(run.events(), "exit")[-1]["detail"]
