"""``python -m f5guard.recipe.setup --out FILE``: can this machine's Python run the training stack (torch,
torchaudio decoding a real file, f5-tts, the recipe's tools, a GPU when required)? Installs only what is missing
or broken, and records what it found.

Scope "runtime": the daemon re-runs it on every new VM, because a pip install lives on the VM's disk. One
fresh interpreter probes everything, item by item (recipe.stackprobe); a torch that works and that f5-tts
accepts is kept even when it is not the pin, and what is installed is matched to it (recipe.stackplan). The
verdict is stamped per machine (recipe.stackstamp): the next run's setup on this machine, with the same
interpreter and versions, reuses it in milliseconds. FILE is removed first and written last, atomically: it
exists only when this VM's stack was checked (or its stamp reused) and found working.

Exit codes: 0 checked (and installed) OK; 1 something is missing or broken (one line on stderr naming it and the
command that fixes it); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.metadata
import os
import platform
import re
import shlex
import site
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from f5guard.fsutil import atomic_write_json
from f5guard.recipe import stackstamp
from f5guard.recipe.options import SETUP, add_flags
from f5guard.recipe.pins import DEFAULT_NEED, MODULES, OVERRIDES, PINS, TORCH_TOGETHER, canonical, overrides_here
from f5guard.recipe.stackplan import KEEP, Item, Need, Plan, plan
from f5guard.recipe.stackprobe import ProbeItem, probe

PROG = "f5guard.recipe.setup"
# What "importable" means for a need: f5_tts is a namespace package (importing it alone loads nothing), and the
# stages use these submodules; anything else is imported by its own name.
IMPORTS = {
    "f5_tts": "f5_tts.model,f5_tts.train.datasets.prepare_csv_wavs",  # CFM, DiT, Trainer + the preparation
    "demucs": "demucs.pretrained,demucs.apply",
}
# what pip says when it cannot reach an index (offline VM, no DNS, a proxy refusing)
_OFFLINE_SIGNS = ("No matching distribution found", "NewConnectionError", "Temporary failure in name resolution",
                  "Network is unreachable", "Max retries exceeded", "Could not fetch URL")  # fmt: skip
# the probe's order: torch first (everything else imports it), the decode test right after torchaudio
_ORDER = ("torch", "@gpu", "torchaudio", "torchcodec", "@audio")


class SetupFailed(Exception):
    """The stack is not usable; the message is the one stderr line after the program name."""


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
    if "torch" not in needs and any(canonical(n.dist) in set(MODULES.values()) for n in needs.values()):
        needs = {"torch": Need("torch", "torch"), **needs}  # they run on torch: which one decides their installs
    if not needs:
        raise ValueError("--need is empty")
    if require_gpu and "torch" not in needs:
        raise ValueError("--require-gpu checks the GPU through torch: add torch to --need")
    return list(needs.values())


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
def own_overrides() -> dict[str, tuple[str, ...]]:
    """pins.overrides_here() (none where the daemon runs in a stack Python of its own), limited to what
    f5guard's own distribution in THIS interpreter requires: the filelock re-assert protects the daemon's lease,
    and is only needed where the daemon's dependencies live. A Python without f5guard installed gets f5-tts's
    filelock as f5-tts wants it."""
    here = overrides_here()
    requires = _installed_requires("f5guard")
    if not here or requires is None:
        return {}
    own = {canonical(re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0]) for r in requires if "extra ==" not in r}
    kept = {d: tuple(r for r in reqs if canonical(re.split(r"[\s<>=!~]", r, maxsplit=1)[0]) in own)
            for d, reqs in here.items()}  # fmt: skip
    return {d: reqs for d, reqs in kept.items() if reqs}


def _installed_requires(name: str) -> list[str] | None:
    """The requirements of ``name`` as installed in THIS interpreter's environment (its prefix or the user's site),
    None when it is not: a checkout's ``f5guard.egg-info`` seen through PYTHONPATH is not an install here."""
    roots = [Path(sys.prefix).resolve(), Path(site.getusersitepackages()).resolve()]
    for dist in importlib.metadata.distributions(name=name):
        where = Path(str(dist.locate_file(""))).resolve()
        if any(where.is_relative_to(root) for root in roots):
            return dist.requires or []
    return None


def probe_items(needs: list[Need], require_gpu: bool) -> list[ProbeItem]:
    modules = [n.module for n in needs]
    names = [m for m in _ORDER if m in modules or (m == "@gpu" and "torch" in modules)]
    names += ["@audio"] if "torchaudio" in modules and "@audio" not in names else []
    names += [m for m in modules if m not in names]
    return [ProbeItem(m, tuple(IMPORTS.get(m, m).split(",")) if not m.startswith("@") else ()) for m in names]


def _dists(needs: list[Need]) -> list[str]:
    """The distributions whose versions the probe reads (and the stamp keys on)."""
    dists = [n.dist for n in needs]
    if any(canonical(d) in set(MODULES.values()) for d in dists):
        dists += [*TORCH_TOGETHER, "f5-tts"]  # the family any torch-dependent install is held to
    return list(dict.fromkeys(dists))


def stamp_key(needs: list[Need], pins: Mapping[str, str], require_gpu: bool) -> dict[str, Any]:
    """The machine stamp's key for this check (recipe.stackstamp), read now from package metadata."""
    dists = _dists(needs)
    wanted = {canonical(d): pins[canonical(d)] for d in dists if canonical(d) in pins}
    return stackstamp.key([(n.module, n.dist) for n in needs], wanted, dists, require_gpu)


def _show(p: Plan) -> None:
    for i in p.items:
        state = "ok" if i.state == "ok" else i.state
        if i.state == "ok" and p.torch == KEEP and i.dist in TORCH_TOGETHER:
            state = "ok (kept: matched to the installed torch)"
        print(f"{i.module:<12} {i.version or '-':<16} want {i.want:<14} {state}", flush=True)
    if p.torch is not None:
        print(f"torch: {p.why}", flush=True)


def _install(p: Plan, what: str) -> list[dict[str, Any]]:
    """Run the plan's pip commands; the f5guard overrides are put back even when one fails."""
    print(f"installing: {what}", flush=True)
    installed: list[dict[str, Any]] = []
    overrides = {req for reqs in OVERRIDES.values() for req in reqs}
    try:
        for command in p.commands:
            seconds = run_pip(command)
            installed.append({"command": command, "seconds": round(seconds, 1)})
    except SetupFailed:
        # A pinned install that failed half way may already have downgraded f5guard's own filelock: put it
        # back whatever happened, or the next `f5guard start` could not even take its lease.
        done = [i["command"] for i in installed]
        for command in p.commands:
            if command[-1] in overrides and command not in done:
                with contextlib.suppress(SetupFailed):
                    run_pip(command)
        raise
    return installed


def _describe(items: list[Item]) -> str:
    return "; ".join(i.describe() for i in items)


def check(needs: list[Need], pins: Mapping[str, str], install: bool, require_gpu: bool = False) -> dict[str, Any]:
    """Probe, install what is missing (matched to the torch that stays), probe again; the report, or
    SetupFailed."""
    items, dists, overrides = probe_items(needs, require_gpu), _dists(needs), own_overrides()
    found = probe(items, dists)
    probes = found.interpreters
    p = plan(needs, pins, found, overrides, require_gpu=require_gpu)
    _show(p)
    first = {"decision": p.torch, "why": p.why}
    installed: list[dict[str, Any]] = []
    if p.bad:
        if not install:
            fix = " && ".join(shlex.join(c) for c in p.commands)
            raise SetupFailed(f"check {sys.executable}: missing {_describe(p.bad)}; fix: {fix}")
        try:
            installed += _install(p, _describe(p.bad))
            failure = None
        except SetupFailed as err:
            failure = err
        if failure is None:
            found = probe(items, dists)
            probes += found.interpreters
            p = plan(needs, pins, found, overrides, require_gpu=require_gpu)
        if p.torch == KEEP and (failure is not None or p.bad):
            # matching the rest to this torch did not give a working stack: the pinned trio, as a last resort
            why = str(failure) if failure is not None else _describe(p.bad)
            print(f"the stack around torch {found.versions.get('torch')} still fails ({why})", flush=True)
            p = plan(needs, pins, found, overrides, require_gpu=require_gpu, force_pins=True)
            _show(p)
            installed += _install(p, _describe(p.bad))
            found = probe(items, dists)
            probes += found.interpreters
            p = plan(needs, pins, found, overrides, require_gpu=require_gpu)
        elif failure is not None:
            raise failure
        if p.bad:
            raise SetupFailed(f"check {sys.executable}: still not working after pip install: {_describe(p.bad)}")
    modules = {n.module for n in needs}
    if "torchaudio" in modules:
        error = found.errors.get("@audio")
        if error:
            raise SetupFailed(
                f"torchaudio.load {sys.executable}: {error} (torchcodec needs FFmpeg's shared "
                "libraries: apt-get install -y ffmpeg)"
            )
        print("torchaudio.load: ok", flush=True)
    gpu = found.gpu
    if "torch" in modules:
        if gpu is None:
            raise SetupFailed(f"GPU check {sys.executable}: {found.errors.get('@gpu')}")
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
        "format": 2,
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "packages": {
            i.module: {
                "dist": i.dist,
                "want": i.want,
                "pinned": pins.get(canonical(i.dist)),
                "version": i.version,
                "error": i.error,
            }
            for i in p.items
        },
        "torch": {**first, "now": p.torch, "now_why": p.why} if p.torch is not None else None,
        "torchaudio_load": {"ok": True, "error": None} if "torchaudio" in modules else None,
        "gpu": gpu,
        "installed": installed,
        "probe_interpreters": probes,
        "reused": None,
    }


def _reuse(stored: dict[str, Any], stamp: Path) -> dict[str, Any]:
    """The stamp's verdict as this run's report: nothing installed now; when and how it was verified."""
    return {
        **stored,
        "installed": [],
        "probe_interpreters": 0,
        "reused": {
            "stamp": str(stamp),
            "verified_at": stored.get("when"),
            "verified_in_s": stored.get("seconds"),
            "installed_then": stored.get("installed", []),
        },
    }


def _stamped(
    needs: list[Need], pins: Mapping[str, str], args: argparse.Namespace, folder: Path, started: float
) -> dict[str, Any]:
    """The machine stamp's verdict when it still holds, else a check (stamped when it passes). A stamp folder
    that cannot be used (a read-only home) costs the reuse, never the check: said in the log and the report."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(stackstamp.locked(folder))
        except OSError as err:
            print(f"machine stamp {folder} unusable ({err.strerror or err}): checking without it", flush=True)
            report = check(needs, pins, args.install, args.require_gpu)
            report.update(when=datetime.now(timezone.utc).isoformat(timespec="seconds"), stamp_error=str(err))
            report["seconds"] = round(time.monotonic() - started, 1)
            return report
        key = stamp_key(needs, pins, args.require_gpu)
        stored = None if args.recheck else stackstamp.read(folder, key)
        if stored is not None:
            report = _reuse(stored, stackstamp.path_for(folder, key))
            print(
                f"stack verified on this machine at {stored.get('when')} (stamp {report['reused']['stamp']}): "
                f"reused in {time.monotonic() - started:.3f} s, nothing probed or installed",
                flush=True,
            )
            return report
        report = check(needs, pins, args.install, args.require_gpu)
        report["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        report["seconds"] = round(time.monotonic() - started, 1)
        key = stamp_key(needs, pins, args.require_gpu)  # after any install
        try:
            stamp = stackstamp.write(folder, key, report)
            print(f"stamped {stamp}: the next setup on this machine reuses this check", flush=True)
        except OSError as err:
            print(f"machine stamp {folder} not written ({err.strerror or err}): the next setup checks again")
            report["stamp_error"] = str(err)
        return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="the JSON report (written last, atomically)")
    add_flags(parser, SETUP)
    parser.add_argument(
        "--pin", action="extend", nargs="+", default=[], metavar="NAME==VERSION", help="override or add a pin"
    )
    parser.add_argument("--require-gpu", action="store_true", help="fail when CUDA is not available (needs torch)")
    parser.add_argument(
        "--recheck", action="store_true", help="check again even when this machine's stamp says it was verified"
    )
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
    folder = stackstamp.directory()
    try:
        report = _stamped(needs, pins, args, folder, started)
    except SetupFailed as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1
    report["run_when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["run_seconds"] = round(time.monotonic() - started, 3)
    try:
        atomic_write_json(args.out, report)
    except OSError as err:
        print(f"{PROG}: write {args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
    how = "reused the machine stamp" if report["reused"] else f"{len(report['installed'])} pip runs"
    print(f"stack ok ({len(needs)} modules, {how}) in {report['run_seconds']} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
