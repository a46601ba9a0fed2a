"""From what the probe saw to what pip must do: keep a working, compatible torch; install only what is missing
or broken, matched to the torch that is there; the pinned torch trio only when torch itself cannot stay.

Why keep a torch that is not the pin: Colab preinstalls its own torch (with torchvision and friends built for
it). Replacing it downloads ~3 GB of CUDA wheels on every recycled VM and can break Colab's other packages,
while f5-tts accepts any torch >= 2.0. A torch stays when it imports, has the pin's major version, and the
f5-tts requirement accepts it; torchaudio then has torch's own version and torchcodec the one that pairs with
it (pins.TORCHCODEC_FOR_TORCH). Pure: no subprocess, no I/O; setup.py runs what it returns.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from f5guard.recipe.pins import (
    F5_TTS_TORCH,
    MODULES,
    TORCH_TOGETHER,
    TORCHAUDIO_NEWEST,
    canonical,
    minor,
    release,
    satisfies,
    torchcodec_for,
)
from f5guard.recipe.stackprobe import Probe

KEEP, PINNED, REPLACE = "kept", "pinned", "replace"  # what happens to torch


@dataclass(frozen=True)
class Need:
    module: str  # what gets imported
    dist: str  # what pip installs


@dataclass(frozen=True)
class Item:
    """One needed module: what is installed, what setup holds it to, and what it found."""

    module: str
    dist: str
    want: str  # the version setup holds it to: the pin, or the one matching the torch that stays
    version: str | None
    error: str | None  # the import's error

    @property
    def state(self) -> str:
        if self.version is None:
            return "missing"
        if release(self.version) != release(self.want):
            return "mismatch"
        return "broken" if self.error else "ok"

    def describe(self) -> str:
        return {
            "missing": f"{self.module} (not installed)",
            "mismatch": f"{self.module} ({self.dist} {self.version} installed, {self.want} wanted)",
            "broken": f"{self.module} (import fails: {self.error})",
        }.get(self.state, self.module)


@dataclass
class Plan:
    items: list[Item]
    torch: str | None  # KEEP, PINNED, REPLACE, or None when torch is not needed
    why: str  # one phrase: why torch is handled so
    commands: list[list[str]] = field(default_factory=list)

    @property
    def bad(self) -> list[Item]:
        return [i for i in self.items if i.state != "ok"]


def torch_verdict(
    probe: Probe, pins: Mapping[str, str], f5_tts_needed: bool, require_gpu: bool = False
) -> tuple[str, str]:
    """(KEEP/PINNED/REPLACE, why) for the torch this interpreter has."""
    version, error, pin = probe.versions.get("torch"), probe.errors.get("torch"), pins["torch"]
    if version is None:
        return REPLACE, "torch is not installed: installing the pinned torch, torchaudio and torchcodec"
    if error:
        return REPLACE, f"torch {version} does not import ({error}): installing the pinned trio"
    if require_gpu and probe.gpu is not None and probe.gpu.get("torch_cuda") is None:
        return REPLACE, f"torch {version} is a CPU-only build and a GPU is required: installing the pinned trio"
    if release(version) == release(pin):
        return PINNED, f"torch {version} is the pinned {pin}"
    if release(version)[:1] != release(pin)[:1]:
        return REPLACE, f"torch {version} is not torch {release(pin)[0]}.x like the pinned {pin}: replacing it"
    if f5_tts_needed:
        spec, whose = _f5_tts_torch(probe)
        ok = satisfies(version, spec)
        if not ok:
            return REPLACE, (
                f"torch {version} is outside {whose}'s torch{spec}" + ("" if ok is False else " (unreadable)")
            ) + ": replacing it"
    return KEEP, f"torch {version} works (the pin is {pin}): kept, the rest matched to it"


def _f5_tts_torch(probe: Probe) -> tuple[str, str]:
    """f5-tts's declared torch range: the installed f5-tts's own, else the pinned release's (pins.F5_TTS_TORCH)."""
    for line in probe.requires.get("f5-tts", []):
        text, _, marker = line.partition(";")
        name = text.strip().split(" ")[0]
        for op in ("<", ">", "=", "!", "~", "("):
            name = name.split(op, 1)[0]
        if canonical(name) == "torch" and not marker.strip():
            spec = text.strip()[len(name) :].strip().strip("()").replace(" ", "")
            return spec or ">=0", f"f5-tts {probe.versions.get('f5-tts')}"
    return F5_TTS_TORCH, "the pinned f5-tts"


def plan(
    needs: list[Need],
    pins: Mapping[str, str],
    probe: Probe,
    overrides: Mapping[str, tuple[str, ...]],
    require_gpu: bool = False,
    force_pins: bool = False,
) -> Plan:
    """What to install for ``needs`` given ``probe``; ``force_pins`` replaces torch whatever it is (the fallback
    when a kept torch's stack still fails after installing)."""
    modules = {n.module for n in needs}
    torch, why = None, ""
    if "torch" in modules:
        torch, why = torch_verdict(probe, pins, "f5_tts" in modules, require_gpu)
        if force_pins and torch == KEEP:
            torch, why = REPLACE, why.split(":")[0] + " but its stack still fails: installing the pinned trio"
    # the torch family at the versions that go with the torch that stays (or the pins): what is checked and
    # what any torch-dependent install is held to, needed or not (f5-tts would pull an unpinned torchaudio in)
    family = {d: pins[d] for d in TORCH_TOGETHER}
    installed = probe.versions.get("torch")
    if torch == KEEP and installed is not None:
        family = {"torch": installed, "torchaudio": installed.split("+", 1)[0]}
        audio = probe.versions.get("torchaudio")
        audio_ok = audio is not None and release(audio) == release(installed) and not probe.errors.get("torchaudio")
        if release(installed)[:2] > TORCHAUDIO_NEWEST and not audio_ok and modules & {"torchaudio", "f5_tts"}:
            again = plan(needs, pins, probe, overrides, require_gpu, force_pins=True)  # (force_pins: not KEEP)
            newest = ".".join(map(str, TORCHAUDIO_NEWEST))
            again.why = f"no torchaudio exists for torch {installed} (the newest is {newest}): installing the pins"
            return again
        pair = torchcodec_for(installed)
        codec = probe.versions.get("torchcodec")
        codec_ok = codec is not None and not probe.errors.get("torchcodec")
        if codec_ok and codec is not None and (pair is None or minor(codec) in pair[1]):
            family["torchcodec"] = codec  # pairs (or torch is newer than the table: the decode test judges it)
        elif pair is not None:
            family["torchcodec"] = pair[0]
        elif modules & {"torchcodec", "f5_tts"}:  # one to install for a torch the table does not know: no safe pick
            again = plan(needs, pins, probe, overrides, require_gpu, force_pins=True)
            again.why = f"torch {installed} is newer than f5guard's torch/torchcodec table: installing the pins"
            return again
    wants = {**{canonical(n.dist): pins[canonical(n.dist)] for n in needs}, **family}
    items = [
        Item(n.module, n.dist, wants[canonical(n.dist)], probe.versions.get(n.dist), probe.errors.get(n.module))
        for n in needs
    ]
    result = Plan(items, torch, why)
    result.commands = _commands(result, family, overrides)
    return result


def _commands(p: Plan, family: Mapping[str, str], overrides: Mapping[str, tuple[str, ...]]) -> list[list[str]]:
    """pip commands that fix ``p.bad``.

    Kept torch: the torch family with ``--no-deps`` (torchaudio's only dependency is torch, which is there);
    everything else in one command that also names the torch family at the versions that stay, so pip's
    resolver holds them (an installed torch==X is "already satisfied": nothing is downloaded) and fails
    rather than drag another torch in. Replaced torch: the pinned trio and the rest in one command, as a fresh
    install would. Broken-at-the-right-version: a forced reinstall without dependencies. Then f5guard's own
    requirements that an install would undo (``overrides``).
    """
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    fresh = [i for i in p.bad if i.state in ("missing", "mismatch")]
    broken = [i for i in p.bad if i.state == "broken"]
    torchy = set(MODULES.values())
    commands: list[list[str]] = []
    held = [f"{d}=={v}" for d, v in family.items()]
    if p.torch == REPLACE and any(canonical(i.dist) in family for i in broken):
        broken = [i for i in broken if canonical(i.dist) not in family]  # a broken trio: reinstalled, pinned
        fresh += [Item(d, d, v, None, None) for d, v in family.items() if d in {x.dist for x in p.items}]
    if p.torch == KEEP:
        family_fresh = [i for i in fresh if canonical(i.dist) in family]
        fresh = [i for i in fresh if canonical(i.dist) not in family]
        if family_fresh:
            commands.append([*pip, "--no-deps", *dict.fromkeys(f"{i.dist}=={i.want}" for i in family_fresh)])
    if fresh:
        reqs = [f"{i.dist}=={i.want}" for i in fresh]
        if any(canonical(i.dist) in torchy for i in fresh):
            reqs += held
        commands.append([*pip, *dict.fromkeys(reqs)])
        extra = [req for i in fresh for req in overrides.get(canonical(i.dist), ())]
        if extra:
            commands.append([*pip, *dict.fromkeys(extra)])
    if broken:
        commands.append([*pip, "--force-reinstall", "--no-deps", *dict.fromkeys(f"{i.dist}=={i.want}" for i in broken)])
    return commands
