"""The whole Vietnamese recipe under the real daemon, offline, CPU: `f5guard init --audio` on a tiny espeak-ng
corpus, real Silero VAD, the real openai-whisper code path (a tiny random model), F5-TTS's own prepare, a tiny
training; then a reconnect where everything is up to date, and one changed file that reruns only its speaker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.recipe_audio_support import build_tiny_whisper, make_recording, need_tools, write_corrupt

pytestmark = [pytest.mark.train, pytest.mark.slow, pytest.mark.timeout(1800)]

STAGES = ["setup", "ingest", "segment", "transcribe", "prepare", "train"]


def tune(text: str, whisper: Path) -> str:
    """The generated config with test-sized models: a tiny random Whisper, every transcript kept, a tiny F5-TTS."""
    replacements = {
        "min_speech_s = 2.0": "min_speech_s = 0.5",  # espeak-ng sentences are shorter than a podcast's
        'model = "large-v3"': f'model = "{whisper}"\nmin_chars = 0\nno_speech_threshold = 1.0',
        'model = "small"': 'model = "tiny"',
        "batch_size_per_gpu = 3200": "batch_size_per_gpu = 2",
        'batch_size_type = "frame"': 'batch_size_type = "sample"',
        "max_samples = 64": "max_samples = 2",
        "epochs = 100": "epochs = 2",
        "num_warmup_updates = 1000": "num_warmup_updates = 2",
        "save_per_updates = 2000": "save_per_updates = 4",
        "last_per_updates = 500": "last_per_updates = 2",
        "num_workers = 2": "num_workers = 1\nthreads = 1",
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def stage_states(report: dict, run: str) -> dict[str, str]:
    return {s["name"]: s["state"] for r in report["runs"] if r["name"] == run for s in r["stages"]}


def test_recipe_end_to_end(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    need_tools()
    audio = tmp_path / "drive" / "raw_audio"
    thuan, giong = "Podcast_Thuận (3)", "Giọng đọc"
    sentences = [
        "Xin chào các bạn.",
        "Hôm nay trời đẹp quá.",
        "Chúng ta cùng học tiếng Việt.",
        "Một hai ba bốn năm.",
        "Cảm ơn các bạn đã lắng nghe.",
    ]
    make_recording(audio / thuan / "bài 1.wav", sentences[:3])
    make_recording(audio / thuan / "bài 2 (trực tiếp).mp3", sentences[2:5])
    make_recording(audio / giong / "chương một.flac", sentences[1:4])
    write_corrupt(audio / giong / "hỏng.mp3")
    whisper = build_tiny_whisper(tmp_path / "tiny-whisper.pt")

    p: Project = make_project("[[runs]]\nname='placeholder'\n[[runs.stages]]\nname='x'\ncommand=['true']\n")
    init = subprocess.run(
        [
            sys.executable,
            "-m",
            "f5guard",
            "init",
            "--home",
            str(p.home),
            "--audio",
            str(audio),
            "--work",
            str(p.work),
            "--pretrained",
            "none",
            "-o",
            str(p.config),
            "--force",
        ],
        capture_output=True,
        text=True,
        env=p.env,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    p.config.write_text(tune(p.config.read_text(), whisper))

    t0 = time.monotonic()
    p.cli("start", check=True)
    for run in (giong, thuan):
        p.wait_run(run, timeout=900)
    first_pass_s = time.monotonic() - t0
    report = p.status()
    for run in (giong, thuan):
        assert set(stage_states(report, run).values()) == {"done"}, stage_states(report, run)
        by_name = {s["name"]: s for r in report["runs"] if r["name"] == run for s in r["stages"]}
        assert by_name["segment"]["items"]["done"] == by_name["segment"]["items"]["total"] > 0
        assert by_name["transcribe"]["items"]["done"] == by_name["transcribe"]["items"]["total"] > 0
        training = next(r["training"] for r in report["runs"] if r["name"] == run)
        assert training["durable_update"] == training["total_updates"] > 0

    run_home = p.home / "runs" / giong
    inventory = json.loads((run_home / "ingest" / "inventory.json").read_text())
    bad = [f for f in inventory["files"] if not f["ok"]]
    assert [Path(f["path"]).name for f in bad] == ["hỏng.mp3"], "the corrupt file is reported and skipped"
    assert "hỏng.mp3" in (p.work / "logs" / giong / "ingest.log").read_text()
    rows = (run_home / "transcribe" / "metadata.csv").read_text().splitlines()
    assert rows[0] == "audio_file|text" and len(rows) > 1
    assert all(Path(row.split("|", 1)[0]).is_absolute() for row in rows[1:])
    assert (run_home / "prepare" / "data" / "raw.arrow").is_file()

    # Reconnect on the same machine: nothing to redo.
    p.cli("stop", check=True)
    t1 = time.monotonic()
    p.cli("start", check=True)
    report = p.wait_for(
        lambda: (r := p.status()) and all(run["state"] == "done" for run in r["runs"]) and r,
        timeout=120,
        what="everything skipped",
    )
    reconnect_s = time.monotonic() - t1
    for run in (giong, thuan):
        assert set(stage_states(report, run).values()) == {"skipped"}, stage_states(report, run)

    # A recycled VM: empty work dir, same home. Only the runtime stage (setup) runs again.
    p.cli("stop", check=True)
    fresh: Project = make_project(
        "[[runs]]\nname='x'\n[[runs.stages]]\nname='x'\ncommand=['true']\n", name="fresh", home=p.home
    )
    fresh.config.write_text(p.config.read_text().replace(f'work = "{p.work}"', f'work = "{fresh.work}"'))
    t2 = time.monotonic()
    fresh.cli("start", check=True, env={"F5GUARD_BOOT_ID": "a-new-vm"})
    report = fresh.wait_for(
        lambda: (r := fresh.status()) and all(run["state"] == "done" for run in r["runs"]) and r,
        timeout=300,
        what="fresh VM pass",
    )
    fresh_vm_s = time.monotonic() - t2
    for run in (giong, thuan):
        states = stage_states(report, run)
        assert states.pop("setup") == "done" and set(states.values()) == {"skipped"}, states
    fresh.cli("stop", check=True)

    # One changed recording: only its speaker's run re-ingests; its other file is not re-segmented.
    make_recording(audio / thuan / "bài 1.wav", sentences[3:5])
    p.cli("start", check=True)
    p.wait_run(thuan, timeout=900)
    report = p.wait_for(
        lambda: (r := p.status()) and all(run["state"] == "done" for run in r["runs"]) and r,
        timeout=300,
        what="both runs settled",
    )
    # Back on the first machine: the newest state (home's, epoch 3) says setup last ran on the other VM, so
    # setup checks this machine again; every data stage of the untouched speaker is skipped.
    giong_states = stage_states(report, giong)
    giong_states.pop("setup")
    assert set(giong_states.values()) == {"skipped"}, giong_states
    thuan_states = stage_states(report, thuan)
    assert all(thuan_states[s] == "done" for s in STAGES[1:]), thuan_states
    segment_log = (p.work / "logs" / thuan / "segment.log").read_text()
    last_attempt = re.split(r"\[f5guard\] attempt \d+: ", segment_log)[-1]
    assert "1 already cut, 1 to cut" in last_attempt and "cut: bài 1.wav" in last_attempt, last_attempt
    assert "cut: bài 2" not in last_attempt, "the unchanged recording is not cut again"
    figures = {
        "first_pass_s": round(first_pass_s, 1),
        "reconnect_s": round(reconnect_s, 1),
        "fresh_vm_s": round(fresh_vm_s, 1),
    }
    (Path(__file__).parent.parent / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (Path(__file__).parent.parent / "bench" / "out" / "recipe_e2e.json").write_text(json.dumps(figures))
