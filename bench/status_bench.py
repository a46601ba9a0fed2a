"""How instant is `f5guard status`, and how light is an idle daemon?

Runs a small pipeline under a real daemon, then times `f5guard status` against `python -c pass` side by side
(alternating, median of N each) and reads the idle daemon's RSS and CPU. Prints the figures and writes
bench/out/status.json. Usage: .venv/bin/python bench/status_bench.py [--runs 10]
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

import psutil

BIN = Path(sys.executable).parent
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


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "home").mkdir()
        config = root / "f5guard.toml"
        config.write_text(f'home = "{root}/home"\nwork = "{root}/work"\n' + PIPELINE)
        f5 = [str(BIN / "f5guard")]
        cfg = ["--config", str(config)]
        subprocess.run(f5 + ["start", *cfg], check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            report = json.loads(subprocess.run(f5 + ["status", "--json", *cfg], capture_output=True, text=True).stdout)
            if report["runs"][0]["stages"][2]["state"] == "running":
                break
            time.sleep(0.2)
        pid = report["daemon"]["pid"]
        for _ in range(2):  # warm the page cache and .pyc files for both
            timed([sys.executable, "-c", "pass"])
            timed(f5 + ["status", *cfg])
        base, status, status_json = [], [], []
        for _ in range(args.runs):
            base.append(timed([sys.executable, "-c", "pass"]))
            status.append(timed(f5 + ["status", *cfg]))
            status_json.append(timed(f5 + ["status", "--json", *cfg]))
        daemon = psutil.Process(pid)
        time.sleep(2)
        cpu0 = daemon.cpu_times()
        t0 = time.monotonic()
        time.sleep(10)
        cpu1 = daemon.cpu_times()
        cpu_pct = 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (time.monotonic() - t0)
        rss_mb = daemon.memory_info().rss / 2**20
        uss_mb = daemon.memory_full_info().uss / 2**20
        text = subprocess.run(f5 + ["status", *cfg], capture_output=True, text=True).stdout
        tail = subprocess.run(f5 + ["tail", "-n", "12", *cfg], capture_output=True, text=True).stdout
        subprocess.run(f5 + ["stop", *cfg], check=True, capture_output=True)
    result = {
        "python_pass_ms": round(1000 * statistics.median(base), 1),
        "status_ms": round(1000 * statistics.median(status), 1),
        "status_json_ms": round(1000 * statistics.median(status_json), 1),
        "ratio": round(statistics.median(status) / statistics.median(base), 2),
        "ratio_json": round(statistics.median(status_json) / statistics.median(base), 2),
        "daemon_idle_rss_mb": round(rss_mb, 1),
        "daemon_idle_uss_mb": round(uss_mb, 1),
        "daemon_idle_cpu_pct": round(cpu_pct, 2),
        "runs": args.runs,
    }
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "status.json").write_text(json.dumps(result, indent=2))
    print(text)
    print(tail)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
