"""``python -m f5guard.recipe.setup --out FILE``: is this machine's training stack importable, at the pinned
versions, with working audio loading and a GPU? Installs what is missing (pinned) and records what it found.

Scope "runtime": the daemon re-runs it on every new VM, because a pip install lives on the VM's disk.
Each module is imported in a fresh ``python -c`` (a broken install shows as broken, not as whatever this
process happened to import earlier). FILE is removed first and written last, atomically: it exists only when
this VM's stack was checked and found working.

Exit codes: 0 checked (and installed) OK; 1 something is missing or broken (one line on stderr naming it and the
command that fixes it); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from f5guard.fsutil import atomic_write_json
from f5guard.itemprogress import ItemProgress
from f5guard.recipe.options import SETUP, add_flags
from f5guard.recipe.pins import DEFAULT_NEED, MODULES, PINS, TORCH_TOGETHER, canonical, overrides_here

PROG = "f5guard.recipe.setup"
# What "importable" means for a need: f5_tts is a namespace package (importing it alone loads nothing), and the
# stages use these submodules; anything else is imported by its own name.
IMPORTS = {
    "f5_tts": "f5_tts.model,f5_tts.train.datasets.prepare_csv_wavs",  # CFM, DiT, Trainer + the preparation
    "demucs": "demucs.pretrained,demucs.apply",
}
PROBE_TIMEOUT_S = 600  # a first import of f5_tts on a cold Colab disk takes tens of seconds
_MARK = "F5GUARD-PROBE "
# what pip says when it cannot reach an index (offline VM, no DNS, a proxy refusing)
_OFFLINE_SIGNS = ("No matching distribution found", "NewConnectionError", "Temporary failure in name resolution",
                  "Network is unreachable", "Max retries exceeded", "Could not fetch URL")  # fmt: skip

# Run in a fresh interpreter: distribution version from metadata (works even when the import is broken), then
# the import itself. Anything the module prints is ignored; only the marked line is read.
_IMPORT_PROBE = r"""
import importlib, importlib.metadata as md, json, sys
module, dist = sys.argv[1], sys.argv[2]
out = {}
try:
    out["version"] = md.version(dist)
except md.PackageNotFoundError:
    out["version"] = None
try:
    for name in module.split(","):
        importlib.import_module(name)
    out["error"] = None
except BaseException as err:
    text = " ".join(str(err).split())
    out["error"] = f"{type(err).__name__}: {text}"[:400] if text else type(err).__name__
print("F5GUARD-PROBE " + json.dumps(out), flush=True)
"""

# torchaudio >= 2.9 decodes through torchcodec + FFmpeg's shared libraries: a wav written with the stdlib
# must come back with the right shape, or prepare/segment will fail later on the real audio.
_LOAD_PROBE = r"""
import json, math, os, struct, sys, wave
path = os.path.join(sys.argv[-1], "probe.wav")
with wave.open(path, "wb") as handle:
    handle.setnchannels(1); handle.setsampwidth(2); handle.setframerate(16000)
    handle.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 5))) for i in range(1600)))
try:
    import torchaudio
    wav, rate = torchaudio.load(path)
    ok = rate == 16000 and tuple(wav.shape) == (1, 1600)
    out = {"ok": ok, "error": None if ok else f"read back {tuple(wav.shape)} at {rate} Hz"}
except BaseException as err:
    out = {"ok": False, "error": (type(err).__name__ + ": " + " ".join(str(err).split()))[:400]}
print("F5GUARD-PROBE " + json.dumps(out), flush=True)
"""

_GPU_PROBE = r"""
import json, torch
out = {"cuda": torch.cuda.is_available(), "torch_cuda": torch.version.cuda, "devices": []}
if out["cuda"]:
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        out["devices"].append({"name": props.name, "memory_gib": round(total / 2**30, 2),
                               "free_gib": round(free / 2**30, 2), "capability": f"{props.major}.{props.minor}"})
print("F5GUARD-PROBE " + json.dumps(out), flush=True)
"""


class SetupFailed(Exception):
    """The stack is not usable; the message is the one stderr line after the program name."""


@dataclass(frozen=True)
class Need:
    module: str  # what gets imported
    dist: str  # what pip installs


@dataclass(frozen=True)
class Found:
    """One module as a fresh interpreter sees it."""

    module: str
    dist: str
    pinned: str
    version: str | None
    error: str | None

    @property
    def state(self) -> str:
        if self.version is None:
            return "missing"
        if not _same_version(self.version, self.pinned):
            return "mismatch"
        return "broken" if self.error else "ok"

    def describe(self) -> str:
        return {
            "missing": f"{self.module} (not installed)",
            "mismatch": f"{self.module} ({self.dist} {self.version} installed, {self.pinned} pinned)",
            "broken": f"{self.module} (import fails: {self.error})",
        }.get(self.state, self.module)


def _same_version(installed: str, pinned: str) -> bool:
    """2.9.1+cu128 is torch 2.9.1: the local build tag does not change the release."""
    public = installed.split("+", 1)[0]
    if public == pinned:
        return True
    try:
        from packaging.version import InvalidVersion, Version  # optional; pip's environments have it
    except ImportError:
        return False
    try:
        return Version(public) == Version(pinned)
    except InvalidVersion:
        return False


# ---------------------------------------------------------------------------------------------- arguments
def parse_pins(texts: list[str]) -> dict[str, str]:
    """PINS with ``NAME==VERSION`` overrides; torch, torchaudio and torchcodec are overridden together or not."""
    pins = dict(PINS)
    overridden = set()
    for text in texts:
        match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9][A-Za-z0-9.+!_-]*)\s*", text)
        if match is None:
            raise ValueError(f"--pin {text!r}: expected NAME==VERSION (an exact version)")
        name = canonical(match.group(1))
        pins[name] = match.group(2)
        overridden.add(name)
    partial = overridden & set(TORCH_TOGETHER)
    if partial and partial != set(TORCH_TOGETHER):
        raise ValueError(
            f"--pin {', '.join(sorted(partial))} alone: pin {', '.join(TORCH_TOGETHER)} together "
            "(torchaudio reads audio through a torchcodec built for one torch)"
        )
    return pins


def parse_needs(text: str | None, pins: dict[str, str], require_gpu: bool = False) -> list[Need]:
    """``MODULE[=DIST],...``; known modules map to their distribution, others to the pin of the same name."""
    items = [t.strip() for t in text.split(",")] if text is not None else list(DEFAULT_NEED)
    needs: dict[str, Need] = {}
    for item in filter(None, items):
        module, _, dist = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", module):
            raise ValueError(f"--need {item!r}: not a module name")
        dist = dist or MODULES.get(module) or canonical(module)
        if canonical(dist) not in pins:
            raise ValueError(f"--need {module}: no pinned version for {dist}; add --pin {dist}==VERSION")
        needs[module] = Need(module, dist)
    if "torchaudio" in needs and "torchcodec" not in needs:  # its decoder: checked and installed with it
        needs["torchcodec"] = Need("torchcodec", "torchcodec")
    if not needs:
        raise ValueError("--need is empty")
    if require_gpu and "torch" not in needs:
        raise ValueError("--require-gpu checks the GPU through torch: add torch to --need")
    return list(needs.values())


# ---------------------------------------------------------------------------------------------- probing
def _run_probe(code: str, *args: str) -> tuple[dict[str, Any] | None, str]:
    """Run ``code`` in a fresh interpreter with ``args`` and a scratch dir as its last argument (also its cwd:
    a folder named torch in the caller's cwd must not shadow the real one)."""
    with tempfile.TemporaryDirectory(prefix="f5guard-setup-") as tmp:
        try:
            proc = subprocess.run([sys.executable, "-c", code, *args, tmp], cwd=tmp, capture_output=True,
                                  text=True, timeout=PROBE_TIMEOUT_S, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            return None, f"timed out after {PROBE_TIMEOUT_S} s"
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK) :]), ""
    tail = " ".join((proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1].split())
    return None, tail[:400]


def probe_modules(needs: list[Need], pins: dict[str, str]) -> list[Found]:
    """Import every module in its own interpreter, a few at a time."""
    progress = ItemProgress(total=len(needs))

    def one(need: Need) -> Found:
        result, failure = _run_probe(_IMPORT_PROBE, IMPORTS.get(need.module, need.module), need.dist)
        progress.advance()
        if result is None:  # the interpreter itself died (segfault in a C extension, timeout)
            return Found(need.module, need.dist, pins[canonical(need.dist)], None, failure or "probe failed")
        return Found(need.module, need.dist, pins[canonical(need.dist)], result["version"], result["error"])

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        found = list(pool.map(one, needs))
    progress.close()
    return found


# ---------------------------------------------------------------------------------------------- installing
def install_commands(bad: list[Found], pins: dict[str, str]) -> list[list[str]]:
    """pip commands that fix ``bad``: one pinned install (then f5guard's own requirements it would undo, see
    pins.overrides_here), then a forced reinstall of broken-at-the-pin ones.

    Any torch-dependent package brings the torch trio's pins into the same command, so pip's resolver cannot
    pick another torch (or an unpinned torchcodec) while satisfying it.
    """
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    fresh = [f for f in bad if f.state in ("missing", "mismatch")]
    broken = [f for f in bad if f.state == "broken"]
    torchy = set(MODULES.values())
    commands = []
    if fresh:
        dists = [f.dist for f in fresh]
        if any(canonical(d) in torchy for d in dists):
            dists += list(TORCH_TOGETHER)
        commands.append([*pip, *dict.fromkeys(f"{d}=={pins[canonical(d)]}" for d in dists)])
        overrides = [req for d in dists for req in overrides_here().get(canonical(d), ())]
        if overrides:
            commands.append([*pip, *dict.fromkeys(overrides)])
    if broken:
        dists = [f.dist for f in broken]
        if any(canonical(d) in TORCH_TOGETHER for d in dists):
            dists += list(TORCH_TOGETHER)
        commands.append(
            [*pip, "--force-reinstall", "--no-deps", *dict.fromkeys(f"{d}=={pins[canonical(d)]}" for d in dists)]
        )
    return commands


def run_pip(command: list[str]) -> float:
    """Run one pip command, its output streamed into the stage log; returns seconds; raises SetupFailed."""
    print("$ " + shlex.join(command), flush=True)
    started = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=40)
    env = dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          text=True, errors="replace", env=env) as proc:  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            tail.append(line.strip())
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        errors = [t for t in tail if t.startswith("ERROR:")] or [t for t in tail if t] or ["no output"]
        why = (
            "pip is not installed in this Python (python -m ensurepip)"
            if "No module named pip" in "".join(tail)
            else errors[-1]
        )
        if any(sign in line for line in tail for sign in _OFFLINE_SIGNS):
            why += (
                " (pip installs from the network: if this VM is offline, install the pinned versions into this "
                "Python beforehand, or set install = false in the setup stage to only check)"
            )
        raise SetupFailed(f"pip install {sys.executable}: exit {proc.returncode} after {seconds:.0f} s: {why}")
    return seconds


# ---------------------------------------------------------------------------------------------- the stage
def check(needs: list[Need], pins: dict[str, str], install: bool, require_gpu: bool = False) -> dict[str, Any]:
    """Probe, install what is missing, probe again; the report to write, or SetupFailed."""
    found = probe_modules(needs, pins)
    for f in found:
        print(f"{f.module:<12} {f.version or '-':<14} pinned {f.pinned:<10} {f.state}", flush=True)
    installed: list[dict[str, Any]] = []
    bad = [f for f in found if f.state != "ok"]
    if bad:
        commands = install_commands(bad, pins)
        what = "; ".join(f.describe() for f in bad)
        if not install:
            fix = " && ".join(shlex.join(c) for c in commands)
            raise SetupFailed(f"check {sys.executable}: missing {what}; fix: {fix}")
        print(f"installing: {what}", flush=True)
        overrides = {req for reqs in overrides_here().values() for req in reqs}
        try:
            for command in commands:
                seconds = run_pip(command)
                installed.append({"command": command, "seconds": round(seconds, 1)})
        except SetupFailed:
            # A pinned install that failed half way may already have downgraded f5guard's own filelock: put it
            # back whatever happened, or the next `f5guard start` could not even take its lease.
            done = [i["command"] for i in installed]
            for command in commands:
                if command[-1] in overrides and command not in done:
                    with contextlib.suppress(SetupFailed):
                        run_pip(command)
            raise
        found = probe_modules(needs, pins)
        still = [f for f in found if f.state != "ok"]
        if still:
            raise SetupFailed(
                f"check {sys.executable}: still not working after pip install: "
                + "; ".join(f.describe() for f in still)
            )
    modules = {n.module for n in needs}
    audio = None
    if "torchaudio" in modules:
        audio, failure = _run_probe(_LOAD_PROBE)
        if audio is None or not audio["ok"]:
            why = failure if audio is None else audio["error"]
            raise SetupFailed(
                f"torchaudio.load {sys.executable}: {why} (torchcodec needs FFmpeg's shared "
                "libraries: apt-get install -y ffmpeg)"
            )
        print("torchaudio.load: ok", flush=True)
    gpu = None
    if "torch" in modules:
        gpu, failure = _run_probe(_GPU_PROBE)
        if gpu is None:
            raise SetupFailed(f"GPU check {sys.executable}: {failure}")
        if require_gpu and not gpu["cuda"]:
            raise SetupFailed(
                f"GPU check {sys.executable}: no CUDA device (on Colab: Runtime > Change runtime type > GPU)"
            )
        names = ", ".join(f"{d['name']} ({d['memory_gib']} GiB)" for d in gpu["devices"])
        print(
            f"GPU: {names}" if gpu["cuda"] else "GPU: none (CUDA not available): training would run on the CPU",
            flush=True,
        )
    return {
        "format": 1,
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "packages": {f.module: {k: v for k, v in asdict(f).items() if k != "module"} for f in found},
        "torchaudio_load": audio,
        "gpu": gpu,
        "installed": installed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="the JSON report (written last, atomically)")
    add_flags(parser, SETUP)
    parser.add_argument(
        "--pin", action="extend", nargs="+", default=[], metavar="NAME==VERSION", help="override or add a pin"
    )
    parser.add_argument("--require-gpu", action="store_true", help="fail when CUDA is not available (needs torch)")
    args = parser.parse_args(argv)
    try:
        pins = parse_pins(args.pin)
        needs = parse_needs(args.need, pins, require_gpu=args.require_gpu)
    except ValueError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    with contextlib.suppress(FileNotFoundError):
        args.out.unlink()  # a report from an earlier VM says nothing about this one
    started = time.monotonic()
    try:
        report = check(needs, pins, args.install, args.require_gpu)
    except SetupFailed as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1
    report["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["seconds"] = round(time.monotonic() - started, 1)
    try:
        atomic_write_json(args.out, report)
    except OSError as err:
        print(f"{PROG}: write {args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(
        f"stack ok ({len(needs)} modules, {len(report['installed'])} pip runs) in {report['seconds']} s; "
        f"wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
