"""What the training stack in this interpreter can do, seen by ONE fresh interpreter: each distribution's version
(from its metadata, so a broken import still shows what is installed), each module's import, a short wav
decoded through ``torchaudio.load`` and the GPU as torch sees it, reported item by item.

One interpreter instead of one per module: torch is imported once (seconds on a cold disk, not seven times).
A fresh one, not this process: a broken install must show as broken, not as whatever this process imported.
When a C extension kills the interpreter, the item it was on is recorded as broken and a new interpreter
probes the items after it, so one crash names its culprit and hides nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

PROBE_TIMEOUT_S = 600  # a first import of torch + f5_tts on a cold Colab disk takes tens of seconds
_MARK = "F5GUARD-PROBE "

# Run as ``python -c _SCRIPT SPEC_JSON SCRATCH_DIR``. Prints one marked JSON line per item as it finishes and
# "begin" lines before each risky step, so the parent knows which item a crash happened in.
_SCRIPT = r"""
import importlib, importlib.metadata as md, json, os, sys
spec, scratch = json.loads(sys.argv[1]), sys.argv[2]
def say(kind, name, **fields):
    print("F5GUARD-PROBE " + json.dumps(dict(kind=kind, name=name, **fields)), flush=True)
def why(err):
    text = " ".join(str(err).split())
    return (f"{type(err).__name__}: {text}" if text else type(err).__name__)[:400]
for dist in spec["dists"]:
    try:
        version, requires = md.version(dist), md.requires(dist) or []
    except md.PackageNotFoundError:
        version, requires = None, []
    say("dist", dist, version=version, requires=requires)
for item in spec["items"]:
    name = item["name"]
    say("begin", name)
    if name == "@audio":
        import math, struct, wave
        path = os.path.join(scratch, "probe.wav")
        with wave.open(path, "wb") as handle:
            handle.setnchannels(1); handle.setsampwidth(2); handle.setframerate(16000)
            handle.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 5))) for i in range(1600)))
        try:
            import torchaudio
            wav, rate = torchaudio.load(path)
            ok = rate == 16000 and tuple(wav.shape) == (1, 1600)
            say("audio", name, error=None if ok else f"read back {tuple(wav.shape)} at {rate} Hz")
        except BaseException as err:
            say("audio", name, error=why(err))
    elif name == "@gpu":
        try:
            import torch
            out = {"cuda": torch.cuda.is_available(), "torch_cuda": torch.version.cuda, "devices": []}
            if out["cuda"]:
                for i in range(torch.cuda.device_count()):
                    props = torch.cuda.get_device_properties(i)
                    free, total = torch.cuda.mem_get_info(i)
                    out["devices"].append({"name": props.name, "memory_gib": round(total / 2**30, 2),
                                           "free_gib": round(free / 2**30, 2),
                                           "capability": f"{props.major}.{props.minor}"})
            say("gpu", name, error=None, **out)
        except BaseException as err:
            say("gpu", name, error=why(err))
    else:
        try:
            for module in item["imports"]:
                importlib.import_module(module)
            say("import", name, error=None)
        except BaseException as err:
            say("import", name, error=why(err))
"""


@dataclass(frozen=True)
class ProbeItem:
    """One thing to check: a module (``imports`` are what "importable" means for it), ``@audio`` or ``@gpu``."""

    name: str
    imports: tuple[str, ...] = ()


@dataclass
class Probe:
    """What the fresh interpreter(s) reported: versions and requirements by distribution, an error (or None)
    by item, the GPU's description, and how many interpreters and seconds it took."""

    versions: dict[str, str | None] = field(default_factory=dict)
    requires: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str | None] = field(default_factory=dict)
    gpu: dict[str, Any] | None = None
    interpreters: int = 0


def probe(items: list[ProbeItem], dists: list[str], python: str = sys.executable) -> Probe:
    """Run the probe in a fresh ``python`` (its cwd a scratch dir: a folder named torch in the caller's cwd
    must not shadow the real one); re-run it past an item that killed the interpreter."""
    result = Probe()
    todo = list(items)
    want_dists = list(dists)
    while True:
        spec = {"dists": want_dists, "items": [{"name": i.name, "imports": list(i.imports)} for i in todo]}
        lines, tail = _run(python, json.dumps(spec))
        result.interpreters += 1
        begun: str | None = None
        for record in lines:
            kind, name = record["kind"], record["name"]
            if kind == "dist":
                result.versions[name] = record["version"]
                result.requires[name] = list(record["requires"])
            elif kind == "begin":
                begun = name
            else:
                result.errors[name] = record["error"]
                if kind == "gpu" and record["error"] is None:
                    result.gpu = {k: v for k, v in record.items() if k not in ("kind", "name", "error")}
                begun = None
        want_dists = [d for d in want_dists if d not in result.versions]
        done = set(result.errors)
        if begun is not None:  # the interpreter died inside this item
            result.errors[begun] = f"the interpreter died: {tail}"
            done.add(begun)
        todo = [i for i in todo if i.name not in done]
        if not todo and not want_dists:
            return result
        if begun is None:  # died before any item (or before the metadata): nothing more to learn by retrying
            for item in todo:
                result.errors[item.name] = f"the interpreter died: {tail}"
            for dist in want_dists:
                result.versions.setdefault(dist, None)
            return result


def _run(python: str, spec: str) -> tuple[list[dict[str, Any]], str]:
    """The marked records the probe printed, and the last stderr line (why it died, when it did)."""
    with tempfile.TemporaryDirectory(prefix="f5guard-setup-") as tmp:
        try:
            proc = subprocess.run([python, "-c", _SCRIPT, spec, tmp], cwd=tmp, capture_output=True, text=True,
                                  timeout=PROBE_TIMEOUT_S, check=False)  # fmt: skip
        except subprocess.TimeoutExpired as err:
            out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
            return _records(out), f"timed out after {PROBE_TIMEOUT_S} s"
    tail = " ".join((proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1].split())[:400]
    return _records(proc.stdout), tail


def _records(stdout: str) -> list[dict[str, Any]]:
    records = []
    for line in stdout.splitlines():  # anything a module prints is ignored; only marked lines are read
        if line.startswith(_MARK):
            try:
                records.append(json.loads(line[len(_MARK) :]))
            except ValueError:
                continue
    return records
