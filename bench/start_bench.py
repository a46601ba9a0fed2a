"""No idle minute at start: `f5guard start` on a fresh home -> the trainer's first update, before and after the
trainer is launched during the lease's settle period (issue 17 item 3), side by side.

"before" is the f5guard tree of ``--before`` (default: e01f4af, main before the start gate), unpacked with
``git archive`` and run from its own PYTHONPATH (daemon, CLI and trainer all come from it); "after" is this
tree. Each run: a fresh home and work dir, the tiny real F5-TTS trainer (CPU, offline), ``settle_s`` shortened
to 15 s (the default is 60 s: the gain is the same trainer startup, the wait around it is shorter), the sides
alternating which goes first. The figure is the trainer's first ``update`` event time (its own clock, on this
machine) minus the moment ``f5guard start`` was called; expected: settle + startup before, max(settle, startup)
after. Writes bench/out/start.json.

Usage: .venv/bin/python bench/start_bench.py [--runs 3] [--settle-s 15] [--before e01f4af]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
       "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}  # fmt: skip
ENV = {k: v for k, v in ENV.items() if not k.startswith("F5GUARD_")}


def tiny_dataset() -> Path:
    root = OUT / "tinydata"
    if not (root / "data" / "raw.arrow").is_file():
        subprocess.run([sys.executable, "-m", "f5guard.trainer.tinydata", str(root), "--n", "8"], check=True,
                       env={**ENV, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=600)  # fmt: skip
    return root / "data"


def config(root: Path, dataset: Path, settle_s: float) -> Path:
    root.mkdir(parents=True)
    path = root / "f5guard.toml"
    path.write_text(f"""home = "{root / "home"}"
work = "{root / "work"}"
[lease]
settle_s = {settle_s}
[[runs]]
name = "bench"
[[runs.stages]]
name = "train"
type = "train"
dataset = "{dataset}"
model = "tiny"
learning_rate = 1e-4
batch_size_per_gpu = 2
batch_size_type = "sample"
max_samples = 2
epochs = 100
num_warmup_updates = 2
save_per_updates = 1000
last_per_updates = 1000
num_workers = 1
threads = 1
""")
    return path


def first_event(progress: Path, kind: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if progress.exists():
            for line in progress.read_text().splitlines():
                if line.startswith("{") and (event := json.loads(line)).get("event") == kind:
                    return event  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise TimeoutError(f"no {kind} event in {progress} within {timeout:g} s")


def one(tree: Path, root: Path, dataset: Path, settle_s: float) -> dict[str, Any]:
    conf = config(root, dataset, settle_s)
    env = {**ENV, "PYTHONPATH": str(tree)}
    cli = [sys.executable, "-m", "f5guard"]
    t0 = time.time()
    # cwd: the tree's own f5guard, not this checkout's (``python -m`` puts the working directory first)
    subprocess.run([*cli, "start", "--config", str(conf)], env=env, check=True, capture_output=True, timeout=120,
                   cwd=root)  # fmt: skip
    progress = root / "work" / "runs" / "bench" / "train" / "progress.jsonl"
    try:
        update = first_event(progress, "update", timeout=settle_s + 300)
        ready = next((json.loads(x) for x in progress.read_text().splitlines() if '"ready"' in x), None)
    finally:
        subprocess.run([*cli, "stop", "--config", str(conf)], env=env, check=False, capture_output=True, timeout=300,
                       cwd=root)  # fmt: skip
    return {
        "start_to_first_update_s": round(update["t"] - t0, 2),
        "trainer_ready_s": round(ready["t"] - t0, 2) if ready else None,  # after only: loaded, at its gate
        "trainer_startup_s": ready["startup_s"] if ready else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle-s", type=float, default=15.0)
    parser.add_argument("--before", default="e01f4af", help="the git revision measured as 'before'")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    dataset = tiny_dataset()
    tmp = Path(tempfile.mkdtemp(prefix="f5guard-start-bench-"))
    try:
        before = tmp / "before"
        before.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "f5guard"], check=True,
                                 capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        sides = {"before": before, "after": ROOT}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
        for i in range(args.runs):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for name in order:
                result = one(sides[name], tmp / f"{name}-{i}", dataset, args.settle_s)
                runs[name].append(result)
                print(f"run {i + 1} {name}: {result}", flush=True)
        med = {n: statistics.median(r["start_to_first_update_s"] for r in rs) for n, rs in runs.items()}
        startup = [r["trainer_startup_s"] for r in runs["after"] if r["trainer_startup_s"] is not None]
        summary = {
            "settle_s": args.settle_s,
            "before_ref": args.before,
            "runs": args.runs,
            "median_start_to_first_update_s": med,
            "after_over_before": round(med["after"] / med["before"], 3),
            "saved_s": round(med["before"] - med["after"], 2),
            "median_trainer_startup_s": round(statistics.median(startup), 2) if startup else None,
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "all": runs,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (OUT / "start.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"start -> first update, fresh home, settle_s {args.settle_s:g} s, median of {args.runs}: "
        f"before {med['before']:.1f} s, after {med['after']:.1f} s (x{summary['after_over_before']}, "
        f"{summary['saved_s']:.1f} s saved; the trainer's own startup: {summary['median_trainer_startup_s']} s)"
    )


if __name__ == "__main__":
    main()
