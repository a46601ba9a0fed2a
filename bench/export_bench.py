"""What does the inference copy cost? `python -m f5guard.trainer.export` on a checkpoint shaped like F5-TTS Base.

A checkpoint with a model, its EMA and Adam's two moments, each of ``--params`` float32 values (F5TTS Base:
~336 M, so ~5.4 GB) is made once. Then, alternating, N times each: `python -c "import torch"` (the fixed cost
of any torch process) and the export (mmap the checkpoint, EMA to fp16, torch.save, fsync, rename). Reports
medians of wall time and of the export process's peak RSS (from wait4), and the size of the copy against the
checkpoint. The page cache is not dropped: after the sync copied it, the durable checkpoint is warm too.
Writes bench/out/export.json and prints a one-line summary.
Usage: .venv/bin/python bench/export_bench.py [--runs 3] [--params 336000000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_MAKE = """
import sys, torch
n = int(sys.argv[2])
ema = {"initted": torch.tensor(True), "step": torch.tensor(1000), "ema_model.transformer.w": torch.randn(n)}
torch.save({"update": 1000, "model_state_dict": {"transformer.w": torch.randn(n)}, "ema_model_state_dict": ema,
            "optimizer_state_dict": {"state": {0: {"exp_avg": torch.randn(n), "exp_avg_sq": torch.rand(n)}},
                                     "param_groups": []}, "scheduler_state_dict": {}}, sys.argv[1])
"""


def timed(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS in bytes of one process (raises on a non-zero exit)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv}: exit {proc.returncode}: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
    return seconds, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--params", type=int, default=336_000_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="f5guard-export-bench-") as tmp:
        src = Path(tmp) / "ckpt-e0001-u000001000.pt"
        subprocess.run([sys.executable, "-c", _MAKE, str(src), str(args.params)], check=True)
        out = Path(tmp) / "export" / "ema-fp16-u000001000.pt"
        imports, exports, rss_import, rss_export = [], [], [], []
        for _ in range(args.runs):
            seconds, rss = timed([sys.executable, "-c", "import torch"])
            imports.append(seconds)
            rss_import.append(rss)
            seconds, rss = timed([sys.executable, "-m", "f5guard.trainer.export", str(src), str(out)])
            exports.append(seconds)
            rss_export.append(rss)
        result = {
            "params": args.params,
            "checkpoint_bytes": src.stat().st_size,
            "copy_bytes": out.stat().st_size,
            "size_ratio": round(out.stat().st_size / src.stat().st_size, 4),
            "import_torch_s": round(statistics.median(imports), 2),
            "export_s": round(statistics.median(exports), 2),
            "export_minus_import_s": round(statistics.median(e - i for e, i in zip(exports, imports, strict=True)), 2),
            "import_torch_peak_rss_mb": round(statistics.median(rss_import) / 1e6, 1),
            "export_peak_rss_mb": round(statistics.median(rss_export) / 1e6, 1),
            "runs": args.runs,
        }
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"export of a {result['checkpoint_bytes'] / 1e9:.2f} GB checkpoint: {result['export_s']} s median "
        f"({result['export_minus_import_s']} s beyond importing torch), copy {result['copy_bytes'] / 1e9:.2f} GB "
        f"({result['size_ratio']:.1%}), peak RSS {result['export_peak_rss_mb']} MB "
        f"(import torch alone {result['import_torch_peak_rss_mb']} MB)"
    )


if __name__ == "__main__":
    main()
