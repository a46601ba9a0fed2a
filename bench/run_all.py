"""Run every benchmark in bench/ one after the other (each writes bench/out/<name>.json and a summary line).

Not part of the tests: figures on a shared machine are compared side by side inside one benchmark, never
asserted. Usage: .venv/bin/python bench/run_all.py [NAME ...]   (e.g. status sync)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ALL = ("status", "sync", "train", "export", "sample")


def main(argv: list[str]) -> int:
    names = argv or list(ALL)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        print(f"bench/run_all.py: unknown benchmark {unknown[0]!r} (choose from {', '.join(ALL)})", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(BENCH / f"{name}_bench.py")], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"bench/run_all.py: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
