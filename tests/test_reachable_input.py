"""Tracebacks on reachable input (issue 16): each of these printed a Python traceback, hung, or said something
untrue. Now: one line and a non-zero exit, or the right answer."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from f5guard.checkpoints.durable import DurableCheckpoint, durable_name, write_manifest
from tests.conftest import Project
from tests.test_samples import _fake_dataset

ESC = "\x1b"


def one_line_error(proc) -> str:  # type: ignore[no-untyped-def]
    assert "Traceback" not in proc.stderr and proc.returncode != 0, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1, proc.stderr
    return str(proc.stderr)


def builtin_run(p: Project, extra: str = "") -> Path:
    data = _fake_dataset(p.root)
    p.config.write_text(p.config.read_text() + f'[[runs]]\nname = "voice"\n[[runs.stages]]\nname = "train"\n'
                        f'type = "train"\ndataset = "{data}"\n{extra}\n')  # fmt: skip
    return data


def test_speak_a_long_text(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The text went on the sampler's command line as `--text=...`: a text that f5guard itself accepts (an argument
    is at most 128 KiB) no longer fit there, E2BIG and a traceback. It goes on stdin now; the sampler gets it (and
    stops here at the vocoder this config names, before importing torch)."""
    p: Project = make_project("")
    vocoder = tmp_path / "vocos"
    vocoder.mkdir()
    builtin_run(p, f'vocoder = "{vocoder}"')
    ckpts = p.home / "runs" / "voice" / "checkpoints"
    ckpts.mkdir(parents=True)
    path = ckpts / durable_name(1, 8)
    path.write_bytes(b"x" * 64)
    write_manifest(DurableCheckpoint(path, path.with_suffix(".json"), 8, 1, 64, "crc32:00000000", time.time(),
                                     "model_last.pt"))  # fmt: skip
    ref = tmp_path / "ref.wav"
    ref.write_bytes(b"RIFF")
    text = ("Xin chao cac ban. " * 8000)[: 128 * 1024 - 4]  # fits f5guard's argv, not with "--text=" before it
    proc = p.cli("speak", "voice", text, "--ref", str(ref), "--ref-text", "xin chào")
    message = one_line_error(proc)
    assert "Argument list too long" not in message and "no config.yaml" in message, message


def progress_copy(p: Project, lines: list[str]) -> None:
    folder = p.home / "runs" / "voice" / "progress"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "e0001-vm.jsonl").write_text("\n".join(lines) + "\n")


ODD_EVENTS = [
    {"event": "start", "t": 1.0, "pid": 1, "start_update": 0},
    {"event": "update", "t": 2.0, "pid": 1, "update": 1, "loss": 0.9, "lr": 1e-5},
    {"event": "update", "t": 3.0, "pid": 1, "update": "2", "loss": 0.8},
    {"event": "update", "t": 4.0, "pid": 1, "update": 3, "loss": "nan", "lr": [1]},
    {"event": "update", "t": "soon", "pid": 1, "update": 4, "loss": 0.7},
    {"event": "update", "t": 5.0, "pid": 1, "update": 10**40, "loss": 0.7},
    {"event": "update", "t": 6.0, "pid": 1, "update": 5, "loss": None},
    {"event": "update", "t": 7.0, "pid": 1, "update": 5, "loss": 0.5},
    {"event": "update", "t": 8.0, "pid": 1},
    {"event": "start", "t": 9.0, "pid": 2, "start_update": "x"},
    {"event": ["update"], "t": 10.0},
    {"event": "update", "t": 11.0, "pid": 2, "update": True, "loss": 0.4},
    {"event": "update", "t": 12.0, "pid": 2, "update": 6, "loss": 0.3, "lr": 2e-5},
]


def test_plot_of_odd_progress_values(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    p: Project = make_project("")
    builtin_run(p)
    lines = [json.dumps(e) for e in ODD_EVENTS]
    lines += ["[" * 100_000 + "]" * 100_000, "not json", json.dumps({"event": "update", "t": math.inf, "update": 7})]
    progress_copy(p, [*lines[:3], "{torn", *lines[3:]])
    out = tmp_path / "plot.png"
    proc = p.cli("plot", "voice", "--out", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert out.read_bytes()[:4] == b"\x89PNG" and "up to update 6" in proc.stdout, proc.stdout


def test_plot_of_a_command_mode_run_says_why_there_is_no_curve(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project("""
[[runs]]
name = "voice"
[[runs.stages]]
name = "train"
type = "train"
mode = "command"
checkpoint_dir = "{work}/ckpts"
command = ["true"]
""")  # fmt: skip
    message = one_line_error(p.cli("plot", "voice"))
    assert "mode = 'command'" in message and "never" not in message and "yet" not in message, message


def test_status_json_on_a_config_error_is_json(make_project) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project("")
    p.config.write_text("this is = = not toml\n")
    proc = p.cli("status", "--json")
    assert proc.returncode == 2 and "invalid TOML" in one_line_error(proc)
    answer = json.loads(proc.stdout)
    assert answer["exit_code"] == 2 and "invalid TOML" in answer["error"]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_stop_timeout_must_be_a_number_of_seconds(make_project, value: str) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project('[[runs]]\nname = "r"\n[[runs.stages]]\nname = "s"\ncommand = ["true"]\n')
    proc = p.cli("stop", "--timeout", value)
    assert proc.returncode == 2 and "--timeout" in one_line_error(proc)


def test_escape_sequences_never_reach_the_terminal(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A stage printing colours, a title change, a hyperlink, a terminal reset and a bell: `tail` and `status`
    print none of them (the log and state hold none), and an older log that does hold them is cleaned on output."""
    script = tmp_path / "noisy.sh"
    script.write_text(
        "printf '\\033[31mred\\033[0m \\033]0;pwned\\007title \\033]8;;http://x\\033\\\\link\\033]8;;\\033\\\\ "
        "\\033c reset \\007bell\\n'\nexit 4\n"
    )
    p: Project = make_project(f'[[runs]]\nname = "r"\n[[runs.stages]]\nname = "noisy"\ncommand = ["sh", "{script}"]\n')
    p.cli("start", check=True)
    p.wait_run("r", ("failed",))
    for proc in (p.cli("tail", "-n", "50"), p.cli("status")):
        assert ESC not in proc.stdout and "\x07" not in proc.stdout, repr(proc.stdout)
        assert "red" in proc.stdout and "link" in proc.stdout
    assert ESC not in json.dumps(p.state()) and "\\u001b" not in json.dumps(p.state())
    p.cli("stop", "--timeout", "30", check=True)
    log = p.work / "logs" / "r" / "noisy.log"
    log.write_text(log.read_text() + f"2026-01-01T00:00:00.000Z {ESC}]0;old{ESC}\\ old line {ESC}[2J\n")
    tail = p.cli("tail", "-n", "50")
    assert ESC not in tail.stdout and "old line" in tail.stdout, repr(tail.stdout)
