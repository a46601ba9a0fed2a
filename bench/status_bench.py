"""How instant is `f5guard status`, and how light is an idle daemon?

Runs a small pipeline under a real daemon, then times `f5guard status` against `python -c pass` side by side
(alternating, median of N each) and reads the idle daemon's RSS and CPU. With ``--tree DIR`` (repeatable) each
tree (a checkout: this one, another commit's) gets its own daemon and is timed in the same alternation, so a
change is measured against its parent on the same machine at the same moment. Prints the figures and writes
bench/out/status.json. Usage: .venv/bin/python bench/status_bench.py [--runs 10] [--tree DIR ...]
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
from typing import Any

import psutil

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
PIPELINE = """
[[runs]]
name = "voice"
[[runs.stages]]
name = "fetch"
command = ["sh", "-c", "printf hello > {work}/raw.txt"]
outputs = ["{work}/raw.txt"]
[[runs.stages]]
name = "clean"
inputs = ["{work}/raw.txt"]
command = ["sh", "-c", "tr a-z A-Z < {work}/raw.txt > {work}/clean.txt"]
outputs = ["{work}/clean.txt"]
[[runs.stages]]
name = "serve"
long_running = true
command = ["sleep", "3600"]
"""


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env, cwd=cwd)
    return time.perf_counter() - t0


class Tree:
    """One checkout with its own daemon on the bench pipeline."""

    def __init__(self, tree: Path, root: Path) -> None:
        self.tree = tree
        self.root = root  # the working directory too: `python -m` would import f5guard from a checkout it runs in
        self.env = {**os.environ, "PYTHONPATH": str(tree), "XDG_CACHE_HOME": str(root / "cache")}
        (root / "home").mkdir(parents=True)  # makes root too
        self.config = root / "f5guard.toml"
        self.config.write_text(f'home = "{root}/home"\nwork = "{root}/work"\n' + PIPELINE)
        self.f5 = [str(BIN / "f5guard")]
        self.cfg = ["--config", str(self.config)]
        self.status: list[float] = []
        self.status_json: list[float] = []

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.f5, *args, *self.cfg], capture_output=True, text=True, env=self.env, check=check,
                              cwd=self.root)  # fmt: skip

    def start(self) -> int:
        self.run("start", check=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            report = json.loads(self.run("status", "--json").stdout)
            if report["runs"][0]["stages"][2]["state"] == "running":
                return int(report["daemon"]["pid"])
            time.sleep(0.2)
        raise SystemExit(f"{self.tree}: the pipeline did not reach its long-running stage in 30 s")

    def time_once(self) -> None:
        self.status.append(timed([*self.f5, "status", *self.cfg], self.env, self.root))
        self.status_json.append(timed([*self.f5, "status", "--json", *self.cfg], self.env, self.root))


def idle(pid: int) -> dict[str, float]:
    daemon = psutil.Process(pid)
    time.sleep(2)
    cpu0 = daemon.cpu_times()
    t0 = time.monotonic()
    time.sleep(10)
    cpu1 = daemon.cpu_times()
    cpu_pct = 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (time.monotonic() - t0)
    return {
        "daemon_idle_rss_mb": round(daemon.memory_info().rss / 2**20, 1),
        "daemon_idle_uss_mb": round(daemon.memory_full_info().uss / 2**20, 1),
        "daemon_idle_cpu_pct": round(cpu_pct, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tree", type=Path, action="append", help="a checkout to time (default: this one)")
    args = parser.parse_args()
    paths = [p.resolve() for p in (args.tree or [HERE.parent])]
    with tempfile.TemporaryDirectory() as tmp:
        trees = [Tree(path, Path(tmp) / f"t{i}") for i, path in enumerate(paths)]
        pids = []
        try:
            pids = [tree.start() for tree in trees]
            for _ in range(2):  # warm the page cache and .pyc files for every command
                timed([sys.executable, "-c", "pass"])
                for tree in trees:
                    tree.time_once()
            for tree in trees:
                tree.status.clear()
                tree.status_json.clear()
            base: list[float] = []
            for _ in range(args.runs):
                base.append(timed([sys.executable, "-c", "pass"]))
                for tree in trees:
                    tree.time_once()
            idles = [idle(pid) for pid in pids]
            text = trees[-1].run("status").stdout
        finally:
            for tree in trees:
                tree.run("stop")
    base_ms = statistics.median(base)
    results: list[dict[str, Any]] = []
    for tree, figures in zip(trees, idles, strict=True):
        results.append({
            "tree": str(tree.tree),
            "status_ms": round(1000 * statistics.median(tree.status), 1),
            "status_json_ms": round(1000 * statistics.median(tree.status_json), 1),
            "ratio": round(statistics.median(tree.status) / base_ms, 2),
            "ratio_json": round(statistics.median(tree.status_json) / base_ms, 2),
            **figures,
        })  # fmt: skip
    result = {"python_pass_ms": round(1000 * base_ms, 1), "runs": args.runs, "trees": results}
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "status.json").write_text(json.dumps(result, indent=2))
    print(text)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
