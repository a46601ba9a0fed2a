"""``python -m f5guard.recipe.segment``: real Silero VAD cuts the corpus into clips at its silences, item by item."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from f5guard.recipe.cliplan import Span, plan_clips
from tests.recipe_audio_support import (
    SENTENCES,
    Recording,
    ledger_lines,
    make_corpus,
    make_recording,
    need_tools,
    ok,
    read_json,
    run_stage,
    stage_env,
)

EDGE_TOLERANCE_S = 0.03  # mp3 decoding shifts timing by a few ms (encoder delay)


@dataclass(frozen=True)
class Segmented:
    audio: Path
    recordings: dict[str, Recording]
    inventory: Path
    out: Path
    stdout: str
    progress: Path


def _ingest_and_segment(root: Path, *segment_args: str) -> Segmented:
    need_tools()
    audio = root / "audio"
    recordings = make_corpus(audio)
    ok(run_stage("ingest", "--audio", audio, "--out", root / "ingest"))
    progress = root / "progress.jsonl"
    inventory = root / "ingest" / "inventory.json"
    proc = ok(
        run_stage(
            "segment", "--inventory", inventory, "--out", root / "segment", *segment_args,
            env=stage_env(F5GUARD_PROGRESS=str(progress)),
        )
    )  # fmt: skip
    return Segmented(audio, recordings, inventory, root / "segment", proc.stdout, progress)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory: pytest.TempPathFactory) -> Segmented:
    """The corpus ingested and segmented once with the notebook's defaults (read-only for the tests below)."""
    return _ingest_and_segment(tmp_path_factory.mktemp("segment"))


def _clips_by_source(manifest: dict) -> dict[str, list[dict]]:
    by_source: dict[str, list[dict]] = {}
    for clip in manifest["clips"]:
        by_source.setdefault(clip["source"], []).append(clip)
    return by_source


@pytest.mark.train
def test_clips_are_the_sentences_cut_in_the_silences(segmented: Segmented) -> None:
    """One 24 kHz mono PCM16 clip per spoken sentence, 0.3-30 s long, every boundary inside a silence."""
    import soundfile as sf

    manifest = read_json(segmented.out / "clips.json")
    assert manifest["format"] == 1
    by_source = _clips_by_source(manifest)
    assert set(by_source) == {str(r.path) for r in segmented.recordings.values()}
    for rec in segmented.recordings.values():
        clips = by_source[str(rec.path)]
        assert len(clips) == len(rec.speech), (rec.path.name, clips)
        for clip, (s, e) in zip(clips, rec.speech, strict=True):
            # the sentence lies inside its clip, and the clip ends in the silence around it
            assert clip["start_s"] <= s + EDGE_TOLERANCE_S and clip["end_s"] >= e - EDGE_TOLERANCE_S, (clip, s, e)
            for other_s, other_e in rec.speech:
                for edge in (clip["start_s"], clip["end_s"]):
                    assert not other_s + EDGE_TOLERANCE_S < edge < other_e - EDGE_TOLERANCE_S, (edge, other_s)
            path = Path(clip["path"])
            assert path.is_absolute() and path.parent == segmented.out / "clips"
            info = sf.info(str(path))
            assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
            assert 0.3 <= info.duration <= 30
            assert info.duration == pytest.approx(clip["duration_s"], abs=0.001)
            assert clip["end_s"] - clip["start_s"] == pytest.approx(clip["duration_s"], abs=0.001)
    assert sorted(p.name for p in (segmented.out / "clips").iterdir()) == sorted(
        Path(c["path"]).name for c in manifest["clips"]
    )


@pytest.mark.train
def test_the_corrupt_source_is_skipped_with_its_reason(segmented: Segmented) -> None:
    """The corrupt mp3 is listed under skipped with why, and said in the log; the rest was cut."""
    skipped = read_json(segmented.out / "clips.json")["skipped"]
    assert [s["source"] for s in skipped] == [str(segmented.audio / "hỏng.mp3")]
    assert skipped[0]["reason"].startswith("corrupt: ")
    assert "skip: hỏng.mp3: corrupt" in segmented.stdout
    records = ledger_lines(segmented.out / "segments.jsonl")
    assert sorted(r["name"] for r in records) == sorted(segmented.recordings)
    last = json.loads(segmented.progress.read_text().splitlines()[-1])
    assert (last["done"], last["total"]) == (3, 3)


@pytest.mark.train
@pytest.mark.slow
def test_a_rerun_cuts_only_the_changed_source_and_drops_removed_ones(tmp_path: Path) -> None:
    """New bytes in one source: only it is cut again (the others' clips are untouched); a removed source's go."""
    first = _ingest_and_segment(tmp_path)
    clips_dir = first.out / "clips"
    before = {p.name: p.stat().st_mtime_ns for p in clips_dir.iterdir()}
    changed = "Podcast_Thuận (3)/bài 1.wav"
    old_clips = {Path(c["path"]).name for c in _clips_by_source(read_json(first.out / "clips.json"))[
        str(first.recordings[changed].path)]}  # fmt: skip
    make_recording(first.recordings[changed].path, [SENTENCES[9], SENTENCES[0]])
    ok(run_stage("ingest", "--audio", first.audio, "--out", tmp_path / "ingest"))
    proc = ok(run_stage("segment", "--inventory", first.inventory, "--out", first.out))
    assert "3 sources, 2 already cut, 1 to cut" in proc.stdout, proc.stdout
    cut_lines = [line for line in proc.stdout.splitlines() if line.startswith("cut: ")]
    assert len(cut_lines) == 1 and cut_lines[0].startswith(f"cut: {changed}: 2 clips"), proc.stdout
    after = {p.name: p.stat().st_mtime_ns for p in clips_dir.iterdir()}
    for name, mtime in before.items():
        if name not in old_clips:
            assert after[name] == mtime, f"{name} was rewritten"
    assert not old_clips & set(after), "the changed source's old clips were not removed"
    manifest = read_json(first.out / "clips.json")
    assert len(_clips_by_source(manifest)[str(first.recordings[changed].path)]) == 2
    assert len(manifest["clips"]) == len(after) == 2 + 4 + 3

    removed = first.recordings["Giọng đọc/chương một.FLAC"].path
    removed.unlink()
    ok(run_stage("ingest", "--audio", first.audio, "--out", tmp_path / "ingest"))
    proc = ok(run_stage("segment", "--inventory", first.inventory, "--out", first.out))
    assert "2 sources, 2 already cut, 0 to cut" in proc.stdout and "3 old clips removed" in proc.stdout
    manifest = read_json(first.out / "clips.json")
    assert str(removed) not in _clips_by_source(manifest)
    assert len(list(clips_dir.iterdir())) == len(manifest["clips"]) == 2 + 4
    assert len(ledger_lines(first.out / "segments.jsonl")) == 2  # compacted to the current sources


@pytest.mark.train
def test_a_killed_run_resumes_at_the_next_source(tmp_path: Path) -> None:
    """SIGKILL after the first source is recorded: the rerun cuts only the other two, and the result is whole."""
    need_tools()
    audio = tmp_path / "audio"
    make_corpus(audio)
    ok(run_stage("ingest", "--audio", audio, "--out", tmp_path / "ingest"))
    out = tmp_path / "segment"
    args = [sys.executable, "-m", "f5guard.recipe.segment", "--inventory", str(tmp_path / "ingest" / "inventory.json"),
            "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(args, env=stage_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ledger_lines(out / "segments.jsonl"):
            assert proc.poll() is None, "segment ended before the test could kill it"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()
    assert not (out / "clips.json").exists()
    done_first = len(ledger_lines(out / "segments.jsonl"))
    assert done_first < 3
    rerun = ok(run_stage("segment", "--inventory", tmp_path / "ingest" / "inventory.json", "--out", out))
    assert f"{done_first} already cut, {3 - done_first} to cut" in rerun.stdout, rerun.stdout
    manifest = read_json(out / "clips.json")
    assert len(manifest["clips"]) == 10
    assert sorted(p.name for p in (out / "clips").iterdir()) == sorted(Path(c["path"]).name for c in manifest["clips"])


@pytest.mark.train
def test_speech_longer_than_the_maximum_is_cut_at_a_pause(tmp_path: Path) -> None:
    """22 s of talk with only short pauses and --max-clip-s 8: cut with a printed reason, in silence, never > 8 s."""
    import numpy as np
    import soundfile as sf

    need_tools()
    talk = make_recording(tmp_path / "audio" / "độc thoại (dài).wav", list(SENTENCES[:6]), gap_s=0.25)
    ok(run_stage("ingest", "--audio", tmp_path / "audio", "--out", tmp_path / "ingest"))
    proc = ok(run_stage("segment", "--inventory", tmp_path / "ingest" / "inventory.json", "--out", tmp_path / "seg",
                        "--max-clip-s", "8"))  # fmt: skip
    reasons = [line for line in proc.stdout.splitlines() if "longer than --max-clip-s 8" in line]
    assert reasons and all("quietest point" in line for line in reasons), proc.stdout
    clips = read_json(tmp_path / "seg" / "clips.json")["clips"]
    assert len(clips) == len(reasons) + 1
    source, rate = sf.read(str(talk.path), dtype="float32")
    for clip, following in itertools.pairwise(clips):
        assert 0.3 <= clip["duration_s"] <= 8.0
        cut = clip["end_s"]
        assert following["start_s"] == cut  # contiguous: nothing of the talk is lost at a forced cut
        around = source[int((cut - 0.02) * rate) : int((cut + 0.02) * rate)]
        assert np.abs(around).max() < 0.01, f"cut at {cut} s is not in a pause"
    assert clips[-1]["duration_s"] <= 8.0
    assert clips[0]["start_s"] <= talk.speech[0][0] and clips[-1]["end_s"] >= talk.speech[-1][1] - EDGE_TOLERANCE_S


@pytest.mark.train
def test_bad_arguments_and_missing_inventory_exit_2(tmp_path: Path) -> None:
    """No inventory, or clip limits that cannot hold a clip: exit 2 with one line naming what."""
    need_tools()
    proc = run_stage("segment", "--inventory", tmp_path / "không có.json", "--out", tmp_path / "seg")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"f5guard.recipe.segment: inventory {tmp_path / 'không có.json'}: does not exist (run the ingest stage first)"
    ]
    (tmp_path / "inv.json").write_text(json.dumps({"format": 1, "audio_dir": "/x", "files": []}))
    proc = run_stage("segment", "--inventory", tmp_path / "inv.json", "--out", tmp_path / "seg", "--max-clip-s", "0.5")
    assert proc.returncode == 2 and proc.stderr.startswith("f5guard.recipe.segment: --min-clip-s/--max-clip-s: ")


def _no_quiet(lo: float, hi: float) -> tuple[float, float]:
    return (lo + hi) / 2, -20.0


def test_plan_joins_short_regions_and_splits_long_ones() -> None:
    """Pure planning: a short region joins a neighbour, a lone one is dropped, a long one is split by quietest()."""
    plan = plan_clips([Span(0.0, 0.2), Span(0.5, 3.0), Span(10.0, 10.1)], min_clip=0.3, max_clip=30, quietest=_no_quiet)
    assert plan.clips == [Span(0.0, 3.0)]
    assert len(plan.notes) == 1 and plan.notes[0].startswith("dropped speech 10.00-10.10 s")

    asked: list[tuple[float, float]] = []

    def quiet_at(lo: float, hi: float) -> tuple[float, float]:
        asked.append((lo, hi))
        return hi - 1.0, -60.0

    plan = plan_clips([Span(1.0, 71.0)], min_clip=0.3, max_clip=30, quietest=quiet_at)
    assert asked[0] == (26.0, 31.0)  # the last 5 s before the 30 s limit
    assert [c.duration for c in plan.clips] == pytest.approx([29.0, 29.0, 12.0])
    assert all(c.duration <= 30 for c in plan.clips) and len(plan.notes) == 2
    assert "longer than --max-clip-s 30" in plan.notes[0] and "-60 dBFS" in plan.notes[0]
    # the tail after a cut never ends up shorter than the minimum
    plan = plan_clips([Span(0.0, 30.1)], min_clip=0.3, max_clip=30, quietest=lambda lo, hi: (hi, -60.0))
    assert min(c.duration for c in plan.clips) >= 0.3
    with pytest.raises(ValueError, match="min clip"):
        plan_clips([], min_clip=0.3, max_clip=0.5, quietest=_no_quiet)
