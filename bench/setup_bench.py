"""What does the setup stage cost on a machine whose torch is not the pin (as on Colab)? Before vs after.

A throwaway venv gets another torch release and its torchaudio (default: 2.8.0 from PyPI; the CPU index may be
unreachable, so these are PyPI's CUDA 12.8 builds and their nvidia wheels). Each side runs on its own hard-linked
copy of it (``cp -al``: the same starting point, a few seconds): ``python -m f5guard.recipe.setup --need NEED``
with the code BEFORE (``git archive`` of a ref, default main) and AFTER (this tree), then a second time, as the
next speaker run's setup would. Measured: wall time of each run, bytes pip downloaded (summed from pip's
"Downloading NAME (SIZE)" lines; pip's cache is off so every byte counts), pip runs, the torch each side ends
with. Optionally (--index-sizes) the bytes the BEFORE code would fetch on Colab, where the preinstalled torch is
a +cu126 build and none of torch 2.9.1's CUDA 12.8 wheels are there: the sizes PyPI publishes for the pinned
trio and every wheel torch 2.9.1 requires on Linux x86_64 (read from the simple index's JSON, not downloaded).
Writes bench/out/setup.json and prints a summary. Not part of the tests: figures on a shared machine.
Usage: .venv/bin/python bench/setup_bench.py [--torch 2.8.0] [--need torch,torchaudio] [--before-ref main]
       [--dir /tmp/f5guard-setup-bench] [--index-sizes]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
UNITS = {"kB": 1e3, "MB": 1e6, "GB": 1e9, "B": 1.0}


def uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not os.access(found, os.X_OK):
        raise SystemExit("bench/setup_bench.py: needs uv (pip install uv)")
    return found


def base_venv(folder: Path, torch: str) -> Path:
    """The starting machine: a venv with torch==TORCH and torchaudio==TORCH, bytecode compiled (as pip
    leaves it), built once and reused."""
    venv = folder / f"base-torch-{torch}"
    if (venv / ".ready").exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([uv(), "venv", "-q", "--seed", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([uv(), "pip", "install", "-q", "--compile-bytecode", "--python", str(venv / "bin" / "python"),
                    f"torch=={torch}", f"torchaudio=={torch}"], check=True)  # fmt: skip
    (venv / ".ready").touch()
    return venv


def before_code(folder: Path, ref: str) -> tuple[Path, str]:
    """The f5guard package as of REF, extracted beside the venvs (not the live main checkout, which moves)."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    code = folder / f"code-{commit[:12]}"
    if not code.exists():
        code.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "f5guard"], capture_output=True,
                                 check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    return code, commit


def downloaded(output: str) -> tuple[int, list[str]]:
    """Bytes and wheel names from pip's "Downloading NAME (1.4 MB)" lines."""
    total, names = 0.0, []
    for name, size, unit in re.findall(r"Downloading (\S+) \(([\d.]+) (kB|MB|GB|B)\)", output):
        total += float(size) * UNITS[unit]
        names.append(name)
    return int(total), names


def run_setup(python: Path, code: Path, out: Path, need: str, cache: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(code), XDG_CACHE_HOME=str(cache), PIP_NO_CACHE_DIR="1")
    started = time.perf_counter()
    proc = subprocess.run([str(python), "-m", "f5guard.recipe.setup", "--out", str(out), "--need", need],
                          capture_output=True, text=True, env=env, cwd=out.parent, check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    size, wheels = downloaded(proc.stdout)
    torch = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('torch'))"],
                           capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return {
        "exit": proc.returncode,
        "seconds": round(seconds, 2),
        "downloaded_bytes": size,
        "wheels": wheels,
        "pip_runs": proc.stdout.count("\n$ ") + proc.stdout.startswith("$ "),
        "torch_after": torch,
        "last_line": (proc.stdout.strip().splitlines() or [""])[-1] if proc.returncode == 0 else proc.stderr.strip(),
    }


def side(name: str, base: Path, code: Path, folder: Path, need: str) -> dict[str, Any]:
    venv = folder / name
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run(["cp", "-al", str(base), str(venv)], check=True)
    cache = folder / f"xdg-{name}"
    shutil.rmtree(cache, ignore_errors=True)
    python = venv / "bin" / "python"
    first = run_setup(python, code, folder / f"{name}-1.json", need, cache)
    print(f"{name} first: {first}", flush=True)
    second = run_setup(python, code, folder / f"{name}-2.json", need, cache)
    print(f"{name} second: {second}", flush=True)
    return {"first": first, "second": second}


def index_size(dist: str, version: str) -> int | None:
    """PyPI's published size of the Linux x86_64 wheel of dist==version for this Python (simple JSON API)."""
    request = urllib.request.Request(f"https://pypi.org/simple/{dist}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 (a fixed https URL)
        files = json.load(answer)["files"]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for f in files:
        name = f["filename"]
        if (
            name.endswith(".whl")
            and f"-{version}-" in name
            and (("x86_64" in name and "linux" in name) or name.endswith("-none-any.whl"))
            and (f"-{tag}-" in name or "-py3-" in name)
        ):
            return int(f["size"])
    return None


def colab_bytes(python: Path, pins: dict[str, str]) -> dict[str, Any]:
    """The pinned trio and torch's pinned Linux requirements (nvidia-*, triton): what a +cu126 Colab lacks."""
    code = "import importlib.metadata as m, json; print(json.dumps(m.requires('torch')))"
    requires = json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                                         check=True).stdout)  # fmt: skip
    wanted = {d: pins[d] for d in ("torch", "torchaudio", "torchcodec")}
    for line in requires:
        text, _, marker = line.partition(";")
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([\w.]+)\s*", text)
        if match and "extra" not in marker and ("linux" in marker.lower() or not marker.strip()):
            wanted[match.group(1)] = match.group(2)
    sizes = {f"{d}=={v}": index_size(d, v) for d, v in wanted.items()}
    return {"wheels": sizes, "total_bytes": sum(s for s in sizes.values() if s)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--torch", default="2.8.0")
    parser.add_argument("--need", default="torch,torchaudio")
    parser.add_argument("--before-ref", default="main")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "f5guard-setup-bench")
    parser.add_argument("--index-sizes", action="store_true")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    base = base_venv(args.dir, args.torch)
    code, commit = before_code(args.dir, args.before_ref)
    result: dict[str, Any] = {"torch_installed": args.torch, "need": args.need, "before_commit": commit}
    result["before"] = side("before", base, code, args.dir, args.need)
    result["after"] = side("after", base, ROOT, args.dir, args.need)
    if args.index_sizes:
        sys.path.insert(0, str(ROOT))
        from f5guard.recipe.pins import PINS

        result["colab_before_bytes"] = colab_bytes(args.dir / "before" / "bin" / "python", dict(PINS))
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    name = "setup" if args.need == "torch,torchaudio" else "setup-" + args.need.replace(",", "-")
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    b, a = result["before"], result["after"]
    print(
        f"setup on torch {args.torch} (need {args.need}): before {b['first']['seconds']} s, "
        f"{b['first']['downloaded_bytes'] / 1e6:.0f} MB, torch -> {b['first']['torch_after']}; again "
        f"{b['second']['seconds']} s | after {a['first']['seconds']} s, {a['first']['downloaded_bytes'] / 1e6:.1f} MB, "
        f"torch -> {a['first']['torch_after']}; again {a['second']['seconds']} s"
        + (
            f" | Colab before: {result['colab_before_bytes']['total_bytes'] / 1e9:.2f} GB"
            if "colab_before_bytes" in result
            else ""
        )
    )


if __name__ == "__main__":
    main()
