"""setup's decisions, from what a probe saw to the pip commands: a working torch that f5-tts accepts stays and
the rest is matched to it; the pinned trio only when torch cannot stay. (The probe itself runs for real in
test_recipe_setup.py; these are the decision table's cases, several of which need a machine we do not have:
Colab's CUDA torch, a torch 1.x, a GPU.)"""

from __future__ import annotations

import sys

from f5guard.recipe.pins import PINS, TORCHCODEC_FOR_TORCH, minor, satisfies
from f5guard.recipe.setup import parse_needs
from f5guard.recipe.stackplan import KEEP, PINNED, REPLACE, plan
from f5guard.recipe.stackprobe import Probe

FILELOCK = {"f5-tts": ("filelock>=4.2.1",)}
PIP = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]


def seen(versions: dict[str, str | None], errors: dict[str, str] | None = None, **kw: object) -> Probe:
    probe = Probe(versions=dict(versions), errors=dict(errors or {}))
    probe.requires = {"f5-tts": ["torch>=2.0.0", "torchaudio>=2.0.0", "torchcodec"]} if versions.get("f5-tts") else {}
    probe.gpu = kw.get("gpu", {"cuda": False, "torch_cuda": "12.6", "devices": []})  # type: ignore[assignment]
    return probe


def test_colab_torch_is_kept_and_the_rest_matched_to_it() -> None:
    """Colab's torch 2.8.0+cu126 with its torchaudio: not reinstalled; torchcodec 0.7 (its pair) alone with
    --no-deps, then f5-tts in a command that names the torch family as installed (pip: already satisfied)."""
    needs = parse_needs("torch,torchaudio,f5_tts", dict(PINS))
    p = plan(needs, PINS, seen({"torch": "2.8.0+cu126", "torchaudio": "2.8.0+cu126"}), FILELOCK)
    assert p.torch == KEEP and "torch 2.8.0+cu126 works" in p.why
    assert {i.module: i.state for i in p.items} == {
        "torch": "ok", "torchaudio": "ok", "torchcodec": "missing", "f5_tts": "missing"}  # fmt: skip
    assert p.commands == [
        [*PIP, "--no-deps", "torchcodec==0.7.0"],
        [*PIP, "f5-tts==1.1.22", "torch==2.8.0+cu126", "torchaudio==2.8.0", "torchcodec==0.7.0"],
        [*PIP, "filelock>=4.2.1"],
    ]


def test_colab_2026_torch_2_11_keeps_its_torchaudio_and_torchcodec() -> None:
    """Colab's 2026 trio (torch/torchaudio 2.11.0+cu128, torchcodec 0.11.0): nothing of it is reinstalled, not even
    torchcodec to the table's 0.11.1; f5-tts alone, with the trio named as it is (test_colab_stack.py: for real)."""
    needs = parse_needs("torch,torchaudio,f5_tts", dict(PINS))
    colab = seen({"torch": "2.11.0+cu128", "torchaudio": "2.11.0+cu128", "torchcodec": "0.11.0"})
    p = plan(needs, PINS, colab, FILELOCK)
    assert p.torch == KEEP and [i.module for i in p.bad] == ["f5_tts"]
    assert p.commands == [
        [*PIP, "f5-tts==1.1.22", "torch==2.11.0+cu128", "torchaudio==2.11.0", "torchcodec==0.11.0"],
        [*PIP, "filelock>=4.2.1"],
    ]
    fresh = plan(needs, PINS, seen({"torch": "2.11.0+cu128", "torchaudio": "2.11.0+cu128"}), {})
    assert fresh.commands[0] == [*PIP, "--no-deps", "torchcodec==0.11.1"], "a missing one: its pair, alone"


def test_kept_torch_gets_torchaudio_of_its_own_version() -> None:
    """A torchaudio of another release, or a broken one, is matched to torch, never torch to it."""
    needs = parse_needs("torch,torchaudio", dict(PINS))
    mismatched = plan(needs, PINS, seen({"torch": "2.7.1", "torchaudio": "2.9.1", "torchcodec": "0.4.0"}), {})
    assert mismatched.torch == KEEP
    assert mismatched.commands == [[*PIP, "--no-deps", "torchaudio==2.7.1"]], "torchcodec 0.4 pairs with 2.7"
    broken = plan(needs, PINS, seen({"torch": "2.7.1", "torchaudio": "2.7.1", "torchcodec": "0.5"},
                                    {"torchaudio": "OSError: libtorchaudio.so"}), {})  # fmt: skip
    assert broken.commands == [[*PIP, "--force-reinstall", "--no-deps", "torchaudio==2.7.1"]]


def test_the_pin_installs_when_torch_cannot_stay() -> None:
    """Missing, broken, another major, outside f5-tts's range, a CPU build where a GPU is required, newer
    than torchaudio or the torchcodec table: the pinned trio, in one command with what else is missing."""
    needs = parse_needs("torch,torchaudio,f5_tts", dict(PINS))
    trio = ["torch==2.9.1", "torchaudio==2.9.1", "torchcodec==0.8.1"]
    cases = {
        "not installed": seen({}),
        "does not import": seen({"torch": "2.8.0"}, {"torch": "ImportError: libcudnn.so.9"}),
        "not torch 2.x": seen({"torch": "3.0.0", "torchaudio": "3.0.0"}),
        "outside f5-tts 9.9's torch>=2.10": seen({"torch": "2.8.0", "torchaudio": "2.8.0", "f5-tts": "9.9"}),
        "CPU-only build": seen({"torch": "2.8.0+cpu", "torchaudio": "2.8.0"}, gpu={"cuda": False, "torch_cuda": None}),
        "no torchaudio exists for torch 2.13.0": seen({"torch": "2.13.0"}),
        "torch 2.99.0 is newer than f5guard's torch/torchcodec table": seen(
            {"torch": "2.99.0", "torchaudio": "2.99.0"}
        ),
    }
    cases["outside f5-tts 9.9's torch>=2.10"].requires["f5-tts"] = ["torch>=2.10"]
    for why, probe in cases.items():
        p = plan(needs, PINS, probe, {}, require_gpu=why == "CPU-only build")
        assert p.torch == REPLACE and why in p.why, (why, p.why)
        assert p.commands[0][: len(PIP)] == PIP and set(trio) <= set(p.commands[0]), (why, p.commands)
    assert not any("--no-deps" in c for c in plan(needs, PINS, cases["not installed"], {}).commands)


def test_a_torch_newer_than_the_table_stays_when_its_stack_works() -> None:
    """The table picks what to install; a working torchcodec for a torch it does not know is judged by the
    decode test, and torch alone never needs the table."""
    needs = parse_needs("torch,torchaudio", dict(PINS))
    p = plan(needs, PINS, seen({"torch": "2.14.0", "torchaudio": "2.14.0", "torchcodec": "0.17.0"}), {})
    assert p.torch == KEEP and p.commands == [] and not p.bad
    alone = plan(parse_needs("torch", dict(PINS)), PINS, seen({"torch": "2.15.0"}), {})
    assert alone.torch == KEEP and alone.commands == []


def test_pinned_torch_and_packages_outside_torch() -> None:
    """At the pin: a mismatched torchcodec is put back to the pin's; a non-torch package is installed alone."""
    needs = parse_needs("torch,torchaudio", dict(PINS))
    p = plan(needs, PINS, seen({"torch": "2.9.1+cu128", "torchaudio": "2.9.1", "torchcodec": "0.7.0"}), {})
    assert p.torch == PINNED and [i.describe() for i in p.bad] == [
        "torchcodec (torchcodec 0.7.0 installed, 0.8.1 wanted)"
    ]
    assert p.commands == [[*PIP, "torchcodec==0.8.1", "torch==2.9.1", "torchaudio==2.9.1"]]
    six = plan(parse_needs("six", {**PINS, "six": "1.16.0"}), {**PINS, "six": "1.16.0"}, seen({}), FILELOCK)
    assert six.torch is None and six.commands == [[*PIP, "six==1.16.0"]]


def test_table_and_version_helpers() -> None:
    """The table's own consistency: the torchcodec installed for a torch pairs with it; the pin is in it."""
    for torch, (install, pairs) in TORCHCODEC_FOR_TORCH.items():
        assert minor(install) in pairs, torch
    assert TORCHCODEC_FOR_TORCH[minor(PINS["torch"])][0] == PINS["torchcodec"]
    assert satisfies("2.8.0+cu126", ">=2.0.0") and satisfies("2.10.1", ">=2.9,<3") and satisfies("2.9.1", "~=2.9.0")
    assert satisfies("1.13.1", ">=2.0.0") is False and satisfies("2.10", "==2.9.*") is False
    assert satisfies("2.9.1", "===2.9.1") is None
