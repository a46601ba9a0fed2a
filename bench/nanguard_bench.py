"""What the NaN guard costs: the trainer's parameter check before each save, and the daemon's torch-free weights
check before a checkpoint is published, resumed or restored, each next to the save it guards.

For the tiny model and for an F5TTS_v1_Base-sized one (DiT dim 1024, depth 22: ~336M parameters), on this CPU:
1. ``nanguard.nonfinite_parameter`` over model + EMA (what runs before every save), median of N;
2. ``torch.save`` of model + EMA + (tiny only: a real AdamW state) to local disk, median of N (F5-TTS's save is
   that ``torch.save``; Base's full checkpoint adds Adam's two moments: ~2x these bytes);
3. ``checkpoints.finite.check`` of that file (what the daemon runs, torch-free), median of N, as GB/s.
A GPU reads the same bytes at hundreds of GB/s (T4: 320 GB/s), so (1) there is the bytes over that, plus one
kernel launch per tensor: the estimate printed beside the CPU figure.

Writes bench/out/nanguard.json. Usage: .venv/bin/python bench/nanguard_bench.py [--runs 5] [--no-base]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from f5_tts.model import CFM, DiT

from f5guard.checkpoints import finite
from f5guard.trainer.nanguard import nonfinite_parameter
from f5guard.trainer.presets import MEL_SPEC, dit_kwargs

HERE = Path(__file__).resolve().parent
T4_BYTES_PER_S = 320e9
LAUNCH_S = 5e-6  # one small CUDA kernel launch


def median_s(fn: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(preset: str, runs: int, folder: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    model = CFM(transformer=DiT(**dit_kwargs(preset), text_num_embeds=256, mel_dim=MEL_SPEC["n_mel_channels"]),
                mel_spec_kwargs=dict(MEL_SPEC), vocab_char_map=None)  # fmt: skip
    ema = copy.deepcopy(model)
    trainer = SimpleNamespace(model=model, ema_model=SimpleNamespace(ema_model=ema),
                              accelerator=SimpleNamespace(unwrap_model=lambda m: m))  # fmt: skip
    ema_state = {f"ema_model.{k}": v for k, v in ema.state_dict().items()}
    doc: dict[str, Any] = {"model_state_dict": model.state_dict(), "ema_model_state_dict": ema_state, "update": 1}
    if preset == "tiny":  # a real optimizer state (Base's would need a forward pass of minutes on a CPU)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        doc["optimizer_state_dict"] = optimizer.state_dict()
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = 2 * sum(p.numel() * p.element_size() for p in model.parameters())  # model + EMA
    tensors = 2 * len(list(model.parameters()))
    assert nonfinite_parameter(trainer) is None
    check_s = median_s(lambda: nonfinite_parameter(trainer), runs)
    path = folder / f"{preset}.pt"
    save_s = median_s(lambda: torch.save(doc, path), runs)

    def scan() -> None:
        os.utime(path)  # a new file version: the remembered verdict does not answer
        assert finite.check(path).reason is None

    scan_s = median_s(scan, runs)
    size = path.stat().st_size
    path.unlink()
    return {
        "params": params,
        "weight_bytes_model_and_ema": weight_bytes,
        "file_bytes": size,
        "param_check_cpu_s": round(check_s, 5),
        "param_check_gpu_estimate_s": round(weight_bytes / T4_BYTES_PER_S + tensors * LAUNCH_S * 2, 4),
        "save_s": round(save_s, 4),
        "param_check_over_save": round(check_s / save_s, 3),
        "daemon_scan_s": round(scan_s, 4),
        "daemon_scan_gb_per_s": round(weight_bytes / scan_s / 1e9, 2),
        "daemon_scan_over_save": round(scan_s / save_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-base", action="store_true", help="only the tiny model (Base needs ~6 GB of RAM)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {"runs": args.runs, "threads": 1}
    with tempfile.TemporaryDirectory(prefix="nanguard-bench-") as tmp:
        for preset in ("tiny",) if args.no_base else ("tiny", "base"):
            results[preset] = measure(preset, args.runs, Path(tmp))
            r = results[preset]
            print(
                f"{preset}: {r['params'] / 1e6:.2f}M params; parameter check {r['param_check_cpu_s'] * 1e3:.2f} ms "
                f"on this CPU (GPU estimate {r['param_check_gpu_estimate_s'] * 1e3:.1f} ms) vs save "
                f"{r['save_s'] * 1e3:.0f} ms = {r['param_check_over_save']:.1%}; daemon weights check "
                f"{r['daemon_scan_s'] * 1e3:.0f} ms ({r['daemon_scan_gb_per_s']} GB/s) = "
                f"{r['daemon_scan_over_save']:.0%} of the save"
            )
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "nanguard.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
