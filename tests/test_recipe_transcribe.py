"""``python -m f5guard.recipe.transcribe``: the real openai-whisper path on a tiny random model, resumable per clip.

Also the item record it rests on (``f5guard.recipe.ledger``) and the transcript filters, as units.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from f5guard.recipe.asr import Rules, Segment, Transcript, clean_text, judge
from f5guard.recipe.ledger import Ledger, read_ledger
from f5guard.recipe.transcribe import metadata_csv
from tests.recipe_audio_support import (
    build_tiny_whisper,
    ledger_lines,
    make_clips,
    make_corpus,
    need_tools,
    ok,
    read_json,
    run_stage,
    stage_env,
    write_clips_manifest,
)

# A random model's tokens have avg_logprob near -10: below Whisper's -1.0 every clip would also be decoded at
# five higher temperatures. The tests pass -20 to stay at temperature 0 (deterministic, 6x faster).
RANDOM_MODEL_ARGS = ("--language", "vi", "--device", "cpu", "--logprob-threshold", "-20")

# Counts every call of Whisper.transcribe (one per clip) in a file, then runs the stage as `python -m` would.
# With WHISPER_BROKEN set every call fails the way a broken CUDA context does.
_COUNTING_RUNNER = textwrap.dedent(
    """
    import os, runpy, sys
    import whisper.model

    _original = whisper.model.Whisper.transcribe

    def counted(self, *args, **kwargs):
        with open(os.environ["WHISPER_CALLS"], "a") as handle:
            handle.write("call\\n")
            handle.flush()
            os.fsync(handle.fileno())
        if os.environ.get("WHISPER_BROKEN"):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return _original(self, *args, **kwargs)

    whisper.model.Whisper.transcribe = counted
    sys.argv[0] = "f5guard.recipe.transcribe"
    runpy.run_module("f5guard.recipe.transcribe", run_name="__main__", alter_sys=True)
    """
)


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tools()
    return build_tiny_whisper(tmp_path_factory.mktemp("whisper") / "tiny whisper (random).pt")


@pytest.fixture
def clips(tmp_path: Path) -> tuple[Path, list[Path]]:
    made = make_clips(tmp_path / "giọng (clips)", 10)
    return write_clips_manifest(tmp_path / "clips.json", made), made


def _rows(metadata: Path) -> list[list[str]]:
    """Read metadata.csv exactly as F5-TTS's prepare_csv_wavs does (csv module, "|", utf-8-sig)."""
    with metadata.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.reader(handle, delimiter="|"))


@pytest.mark.train
def test_transcripts_become_metadata_csv_and_a_manifest(
    tiny_whisper: Path, clips: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """Every clip transcribed once, kept, written as `audio_file|text` with absolute paths; manifest last."""
    manifest_in, made = clips
    out = tmp_path / "home" / "transcribe"
    progress = tmp_path / "progress.jsonl"
    proc = ok(
        run_stage(
            "transcribe", "--clips", manifest_in, "--out", out, "--model", tiny_whisper, *RANDOM_MODEL_ARGS,
            "--min-chars", "0", "--no-speech-threshold", "1.0", env=stage_env(F5GUARD_PROGRESS=str(progress)),
        )
    )  # fmt: skip
    rows = _rows(out / "metadata.csv")
    assert rows[0] == ["audio_file", "text"]
    assert [r[0] for r in rows[1:]] == [str(p) for p in made]
    for path, text in rows[1:]:
        assert Path(path).is_absolute() and Path(path).is_file()
        assert text and text == clean_text(text) and "|" not in text
    manifest = read_json(out / "manifest.json")
    assert manifest == {
        "format": 1,
        "kept": 10,
        "dropped": {"empty": 0, "short": 0, "non_speech": 0, "failed": 0},
        "metadata": str(out / "metadata.csv"),
    }
    assert sum(line.startswith("transcribed: ") for line in proc.stdout.splitlines()) == 10
    records = ledger_lines(out / "transcripts.jsonl")
    assert len(records) == 10 and all(r["key"] == f"{r['sha256']}|{r['clip']}" for r in records)
    last = json.loads(progress.read_text().splitlines()[-1])
    assert (last["done"], last["total"]) == (10, 10)

    # The filters run on the record: a stricter --min-chars re-judges every clip without transcribing one.
    proc = run_stage("transcribe", "--clips", manifest_in, "--out", out, "--model", tiny_whisper, *RANDOM_MODEL_ARGS,
                     "--min-chars", "1000", "--no-speech-threshold", "1.0")  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "10 already done, 0 to transcribe" in proc.stdout
    assert sum(": short: " in line for line in proc.stdout.splitlines()) == 10
    assert "no clip kept out of 10 (0 empty, 10 short, 0 non_speech, 0 failed)" in proc.stderr
    assert not (out / "manifest.json").exists()


@pytest.mark.train
@pytest.mark.slow
def test_a_killed_run_resumes_at_the_next_clip(
    tiny_whisper: Path, clips: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """SIGKILL after k recorded clips: the rerun transcribes only the rest; every clip is in metadata.csv once."""
    manifest_in, made = clips
    out = tmp_path / "transcribe"
    runner = tmp_path / "counting_runner.py"
    runner.write_text(_COUNTING_RUNNER)
    calls = tmp_path / "whisper-calls.txt"
    argv = [sys.executable, str(runner), "--clips", str(manifest_in), "--out", str(out), "--model", str(tiny_whisper),
            *RANDOM_MODEL_ARGS, "--min-chars", "0"]  # fmt: skip
    env = stage_env(WHISPER_CALLS=str(calls))
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while len(ledger_lines(out / "transcripts.jsonl")) < 3:
            assert first.poll() is None, "transcribe ended before the test could kill it"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=30)
        assert first.stdout is not None
        first.stdout.close()
    assert first.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    recorded = len(ledger_lines(out / "transcripts.jsonl"))
    calls_first = len(calls.read_text().splitlines())
    assert 3 <= recorded < 10 and recorded <= calls_first <= recorded + 1  # at most one clip was in flight

    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)
    ok(second)
    assert f"{recorded} already done, {10 - recorded} to transcribe" in second.stdout, second.stdout
    calls_total = len(calls.read_text().splitlines())
    assert calls_total - calls_first == 10 - recorded  # the rerun did only the clips not yet recorded
    assert 10 <= calls_total <= 11
    rows = _rows(out / "metadata.csv")[1:]
    assert sorted(r[0] for r in rows) == sorted(str(p) for p in made)  # each clip exactly once
    assert read_json(out / "manifest.json")["kept"] == 10
    assert len(read_ledger(out / "transcripts.jsonl")) == 10


@pytest.mark.train
def test_a_broken_model_fails_the_stage_and_its_clips_are_retried(
    tiny_whisper: Path, clips: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """Model errors on 3 clips in a row: exit 1 with one line; the next run retries those clips, not the rest."""
    manifest_in, _ = clips
    out = tmp_path / "transcribe"
    runner = tmp_path / "counting_runner.py"
    runner.write_text(_COUNTING_RUNNER)
    calls = tmp_path / "whisper-calls.txt"
    argv = [sys.executable, str(runner), "--clips", str(manifest_in), "--out", str(out), "--model", str(tiny_whisper),
            *RANDOM_MODEL_ARGS, "--min-chars", "0"]  # fmt: skip
    broken = subprocess.run(argv, env=stage_env(WHISPER_CALLS=str(calls), WHISPER_BROKEN="1"), capture_output=True,
                            text=True, timeout=240)  # fmt: skip
    assert broken.returncode == 1, broken.stdout + broken.stderr
    line = broken.stderr.strip()
    assert "\n" not in line and "failed on 3 clips in a row" in line and "device-side assert" in line, line
    assert len(calls.read_text().splitlines()) == 3 and not (out / "manifest.json").exists()
    healed = subprocess.run(argv, env=stage_env(WHISPER_CALLS=str(calls)), capture_output=True, text=True,
                            timeout=240)  # fmt: skip
    ok(healed)
    assert "0 already done, 10 to transcribe" in healed.stdout  # the 3 failed ones are retried with the rest
    assert read_json(out / "manifest.json")["kept"] == 10


@pytest.mark.train
def test_an_undecodable_clip_is_dropped_as_failed(
    tiny_whisper: Path, clips: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    """A clip that does not decode is counted under dropped.failed with its reason; the others are kept."""
    manifest_in, made = clips
    made[2].write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    out = tmp_path / "transcribe"
    proc = ok(run_stage("transcribe", "--clips", manifest_in, "--out", out, "--model", tiny_whisper,
                        *RANDOM_MODEL_ARGS, "--min-chars", "0"))  # fmt: skip
    assert f"failed: {made[2].name}: does not decode" in proc.stdout
    manifest = read_json(out / "manifest.json")
    assert manifest["kept"] == 9 and manifest["dropped"]["failed"] == 1
    assert str(made[2]) not in (out / "metadata.csv").read_text(encoding="utf-8")
    rerun = ok(run_stage("transcribe", "--clips", manifest_in, "--out", out, "--model", tiny_whisper,
                         *RANDOM_MODEL_ARGS, "--min-chars", "0"))  # fmt: skip
    assert "10 already done, 0 to transcribe" in rerun.stdout  # a bad file is not retried: its bytes are the same


@pytest.mark.train
@pytest.mark.slow
def test_from_audio_folder_to_an_f5_tts_dataset(tiny_whisper: Path, tmp_path: Path) -> None:
    """ingest -> segment -> transcribe, then F5-TTS's own prepare_and_save_set reads metadata.csv: every row."""
    pytest.importorskip("f5_tts")
    need_tools()
    audio = tmp_path / "Podcast_Thuận (3)"
    make_corpus(audio)
    home = tmp_path / "F5TTS_Vietnamese"
    ok(run_stage("ingest", "--audio", audio, "--out", home / "ingest"))
    ok(run_stage("segment", "--inventory", home / "ingest" / "inventory.json", "--out", home / "segment"))
    ok(run_stage("transcribe", "--clips", home / "segment" / "clips.json", "--out", home / "transcribe",
                 "--model", tiny_whisper, *RANDOM_MODEL_ARGS, "--min-chars", "0"))  # fmt: skip
    kept = read_json(home / "transcribe" / "manifest.json")["kept"]
    assert kept == len(read_json(home / "segment" / "clips.json")["clips"]) == 10
    code = (
        "import sys\n"
        "from f5_tts.train.datasets.prepare_csv_wavs import prepare_and_save_set\n"
        "prepare_and_save_set(sys.argv[1], sys.argv[2], is_finetune=False, num_workers=1)\n"
    )
    data = home / "data"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(home / "transcribe" / "metadata.csv"), str(data)],
        env=stage_env(), capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "not found" not in proc.stdout and "Skipping corrupt" not in proc.stdout, proc.stdout
    durations = read_json(data / "duration.json")["duration"]
    assert len(durations) == kept and all(0.3 <= d <= 30 for d in durations)
    assert (data / "raw.arrow").is_file() and (data / "vocab.txt").read_text(encoding="utf-8").strip()


@pytest.mark.train
def test_unknown_model_or_missing_clip_is_bad_input(tiny_whisper: Path, clips: tuple[Path, list[Path]],
                                                    tmp_path: Path) -> None:  # fmt: skip
    """Exit 2 with one line, before any clip is transcribed."""
    manifest_in, made = clips
    proc = run_stage("transcribe", "--clips", manifest_in, "--out", tmp_path / "t", "--model", "large-v9",
                     "--language", "vi")  # fmt: skip
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("f5guard.recipe.transcribe: --model large-v9: neither a checkpoint file")
    made[4].unlink()
    proc = run_stage("transcribe", "--clips", manifest_in, "--out", tmp_path / "t", "--model", tiny_whisper,
                     *RANDOM_MODEL_ARGS)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"f5guard.recipe.transcribe: clip {made[4]}: missing (rerun f5guard.recipe.segment)"
    assert not (tmp_path / "t" / "transcripts.jsonl").exists()


def _seg(no_speech: float, logprob: float, text: str = " xin chào") -> Segment:
    return Segment(text, no_speech, logprob)


def test_filters_drop_non_speech_empty_and_short_transcripts() -> None:
    """Whisper's non-speech rule needs both signals; empty and too-few-letters texts are dropped; the rest kept."""
    rules = Rules(min_chars=2, no_speech_threshold=0.6, logprob_threshold=-1.0)
    keep = Transcript(" Xin chào các bạn.", (_seg(0.1, -0.3),))
    assert judge(keep, rules) == (None, "")
    assert judge(Transcript("", ()), rules)[0] == "non_speech"  # Whisper skipped every window itself
    reason, detail = judge(Transcript(" ừm", (_seg(0.9, -1.5),)), rules)
    assert reason == "non_speech" and "no_speech_prob 0.90 > 0.6" in detail and "avg_logprob -1.50 < -1" in detail
    # a high no_speech_prob alone is not enough (confident text), nor a low logprob alone (speech, badly heard)
    assert judge(Transcript(" Xin chào.", (_seg(0.9, -0.2),)), rules)[0] is None
    assert judge(Transcript(" Xin chào.", (_seg(0.1, -1.5),)), rules)[0] is None
    # one speech window among silent ones keeps the clip
    assert judge(Transcript(" Xin chào.", (_seg(0.9, -1.5), _seg(0.1, -0.2))), rules)[0] is None
    assert judge(Transcript("  \n ", (_seg(0.1, -0.2, ""),)), rules) == ("empty", "no text")
    assert judge(Transcript(" | ", (_seg(0.1, -0.2, ""),)), rules)[0] == "empty"
    reason, detail = judge(Transcript(" à...", (_seg(0.1, -0.2),)), rules)
    assert reason == "short" and "1 letters < --min-chars 2" in detail
    assert judge(Transcript(" 1 2 3 ?!", (_seg(0.1, -0.2),)), rules)[0] == "short"
    assert judge(Transcript(" ạ ờ", (_seg(0.1, -0.2),)), rules)[0] is None  # Vietnamese letters count as letters
    assert judge(Transcript("?", (_seg(0.1, -0.2),)), Rules(min_chars=0))[0] is None


def test_metadata_csv_round_trips_through_the_csv_reader(tmp_path: Path) -> None:
    """Texts with quotes and paths with spaces survive prepare_csv_wavs' csv.reader; "|" and newlines never reach it."""
    rows = [
        ("/home/Giọng đọc (3)/bài 1.a1b2c3d4__0001.wav", clean_text(' "Xin chào" | các\nbạn ')),
        ("/home/clips/x.wav", 'Anh ấy nói "không".'),
    ]
    path = tmp_path / "metadata.csv"
    path.write_bytes(metadata_csv(rows))
    assert _rows(path) == [["audio_file", "text"], [rows[0][0], '"Xin chào" các bạn'], list(rows[1])]


def test_ledger_keeps_the_latest_record_and_survives_a_torn_line(tmp_path: Path) -> None:
    """Last record per key wins; a torn last line (kill mid-write) is ignored and the next append still parses."""
    path = tmp_path / "items.jsonl"
    with Ledger(path) as ledger:
        ledger.append("a", {"text": "một"})
        ledger.append("b", {"text": "hai"})
        ledger.append("a", {"text": "ba"})
    with path.open("ab") as handle:
        handle.write('{"key": "c", "text": "bố'.encode()[:-1])  # torn mid-record, mid-character
    assert read_ledger(path) == {"a": {"key": "a", "text": "ba"}, "b": {"key": "b", "text": "hai"}}
    with Ledger(path) as ledger:
        assert set(ledger.done) == {"a", "b"}
        ledger.append("c", {"text": "bốn"})
    assert read_ledger(path)["c"] == {"key": "c", "text": "bốn"}
    with Ledger(path) as ledger:
        ledger.compact({"c": ledger.done["c"]})
    assert path.read_text(encoding="utf-8").splitlines() == ['{"key": "c", "text": "bốn"}']
    assert read_ledger(tmp_path / "none.jsonl") == {}
