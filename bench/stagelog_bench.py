"""What does a line that never ends cost the daemon? The stage log's pump fed N MB with no newline, in 64 KiB
chunks (what the daemon's pump reads), by the StageLog of a given commit and by this tree's, side by side.

Before, each chunk re-joined and re-split the whole partial line (quadratic) and the line was written whole
(past ``[logs] max_bytes``). Reports medians of wall seconds and the log's size on disk, and the ratio.
Writes bench/out/stagelog.json and prints a one-line summary.
Usage: .venv/bin/python bench/stagelog_bench.py [--mb 16] [--runs 3] [--before f73d2a6]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from f5guard.redact import Redactor  # noqa: E402 - after the path set-up


def stagelog_of(commit: str | None, scratch: Path) -> ModuleType:
    """The stagelog module as it is at ``commit`` (None: this tree)."""
    if commit is None:
        from f5guard.stages import stagelog

        return stagelog
    source = subprocess.run(["git", "show", f"{commit}:f5guard/stages/stagelog.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    path = scratch / f"stagelog_{commit}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"stagelog_{commit}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(module: ModuleType, megabytes: int, folder: Path) -> tuple[float, int]:
    log = folder / "s.log"
    stage = module.StageLog(log, max_bytes=1024 * 1024, backups=1, redactor=Redactor())
    chunk = b"x" * 65536
    started = time.perf_counter()
    for _ in range(megabytes * 16):
        stage.feed(chunk)
    stage.feed(b"\n")
    stage.close()
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in folder.glob("s.log*"))
    for p in folder.glob("s.log*"):
        p.unlink()
    return seconds, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", default="f73d2a6")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        modules = {"before": stagelog_of(args.before, scratch), "now": stagelog_of(None, scratch)}
        results: dict[str, list[tuple[float, int]]] = {name: [] for name in modules}
        for _ in range(args.runs):  # alternating, so both see the same machine load
            for name, module in modules.items():
                results[name].append(run(module, args.mb, scratch))
    summary = {
        name: {"seconds": statistics.median(s for s, _ in r), "log_bytes": statistics.median(b for _, b in r)}
        for name, r in results.items()
    }
    summary["ratio"] = {"seconds": summary["before"]["seconds"] / summary["now"]["seconds"]}
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "stagelog.json").write_text(json.dumps({"mb": args.mb, "runs": args.runs, **summary}, indent=2))
    print(f"{args.mb} MB without a newline: before {summary['before']['seconds']:.2f} s "
          f"({summary['before']['log_bytes'] / 1e6:.1f} MB logged), now {summary['now']['seconds']:.3f} s "
          f"({summary['now']['log_bytes'] / 1e6:.3f} MB logged): {summary['ratio']['seconds']:.0f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
