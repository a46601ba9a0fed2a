"""What does hearing the voice cost? Audio samples (``sample_every``) on the tiny real F5-TTS model, CPU, offline.

1. One sample: ``python -m f5guard.trainer.sample`` on a durable checkpoint of a tiny training, with the tiny
   random vocos (f5guard.trainer.tinyvocoder) and a reference clip from the dataset, N times; wall time and the
   process's peak RSS (wait4), medians, beside ``python -c "import torch"`` (the fixed cost of any torch
   process). The tiny model makes the model's own share small: most of it is imports and the vocoder.
2. Training speed with ``sample_every`` on vs off under the daemon, same knobs (train_bench's), the sides
   alternating, N runs each; updates/s from the progress file's `update` events (first to last), medians and
   their ratio (target >= 0.98). With sample_every = save_per_updates a sample runs beside the trainer for
   most of the run (nice 10, one thread).
Writes bench/out/sample.json and prints a summary. Figures on a shared machine are noisy: compare side by side.
Usage: .venv/bin/python bench/sample_bench.py [--runs 3] [--samples 3] [--epochs 80]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_bench import timed
from train_bench import BASE_ENV, KNOBS, OUT, PY, F5Side, log, note, rate_of, tiny_dataset

SAMPLE_TEXT = "Xin chào, đây là giọng nói của tôi."


def tiny_vocoder() -> Path:
    out = OUT / "tinyvocos"
    if not (out / "pytorch_model.bin").is_file():
        subprocess.run([PY, "-m", "f5guard.trainer.tinyvocoder", str(out)], check=True, env=BASE_ENV,
                       stdout=subprocess.DEVNULL, timeout=300)  # fmt: skip
    return out


def run_training(root: Path, dataset: Path, epochs: int, overrides: dict[str, Any]) -> dict[str, Any]:
    side = F5Side(root, dataset, epochs, overrides)
    try:
        side.start()
        side.progress.wait(lambda e: e.get("event") == "exit", 0, 1800, "the training to finish", interval=0.05)
        deadline = time.monotonic() + 600  # the final sample of the finished training
        while side.state_record().get("state") == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        record = json.loads((side.work / "state.json").read_text())["runs"]["bench"].get("training") or {}
    finally:
        side.close()
    rate = rate_of(side.progress.events)
    samples = sorted(p.name for p in (root / "home" / "runs" / "bench" / "samples").glob("u*.wav"))
    rate["samples"] = samples
    if overrides.get("sample_every") and (record.get("sample") or {}).get("error"):
        note(f"sample failed: {record['sample']['error']}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=80)
    args = parser.parse_args()
    dataset, vocoder = tiny_dataset(), tiny_vocoder()
    every = int(KNOBS["save_per_updates"])
    sides: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="f5guard-sample-bench-") as tmp:
        for i in range(args.runs):
            for name in ("off", "on") if i % 2 == 0 else ("on", "off"):
                overrides: dict[str, Any] = (
                    {"sample_every": every, "sample_text": SAMPLE_TEXT, "vocoder": str(vocoder)} if name == "on" else {}
                )
                row = run_training(Path(tmp) / f"{name}-{i}", dataset, args.epochs, overrides)
                sides[name].append(row)
                log(f"run {i} sample_every {'on ' if name == 'on' else 'off'}: {row['updates_per_s']} upd/s, "
                    f"samples {row['samples']}")  # fmt: skip
        ckpt = next((Path(tmp) / "on-0" / "home" / "runs" / "bench" / "checkpoints").glob("ckpt-*.pt"))
        argv = [PY, "-m", "f5guard.trainer.sample", str(ckpt), str(Path(tmp) / "one.wav"), "--model", "tiny",
                "--vocab", str(dataset / "vocab.txt"), "--dataset", str(dataset), f"--text={SAMPLE_TEXT}",
                f"--vocoder={vocoder}"]  # fmt: skip
        one, base = [], []
        for _ in range(args.samples):
            base.append(timed([PY, "-c", "import torch"]))
            one.append(timed(argv))
    off = statistics.median(r["updates_per_s"] for r in sides["off"])
    on = statistics.median(r["updates_per_s"] for r in sides["on"])
    result = {
        "one_sample": {
            "seconds_median": round(statistics.median(s for s, _ in one), 2),
            "peak_rss_mb_median": round(statistics.median(r for _, r in one) / 2**20, 1),
            "import_torch_seconds_median": round(statistics.median(s for s, _ in base), 2),
            "import_torch_rss_mb_median": round(statistics.median(r for _, r in base) / 2**20, 1),
            "runs": [{"seconds": round(s, 2), "peak_rss_mb": round(r / 2**20, 1)} for s, r in one],
        },
        "training": {
            "sample_every": every,
            "epochs": args.epochs,
            "updates_per_s_off_median": off,
            "updates_per_s_on_median": on,
            "ratio_on_off": round(on / off, 3),
            "target_ratio_min": 0.98,
            "off": sides["off"],
            "on": sides["on"],
        },
        "cpu_count": __import__("os").cpu_count(),
        "load_avg": __import__("os").getloadavg(),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "sample.json").write_text(json.dumps(result, indent=2) + "\n")
    s = result["one_sample"]
    print(f"one sample (tiny, CPU): {s['seconds_median']} s, peak RSS {s['peak_rss_mb_median']} MB "
          f"(import torch alone: {s['import_torch_seconds_median']} s, {s['import_torch_rss_mb_median']} MB); "
          f"training {on} upd/s with samples vs {off} without: ratio {result['training']['ratio_on_off']} "
          f"(target >= 0.98)")  # fmt: skip


if __name__ == "__main__":
    main()
