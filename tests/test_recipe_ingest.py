"""``python -m f5guard.recipe.ingest``: the inventory of a speaker's audio, corrupt files reported, hashes reused."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.recipe_audio_support import (
    Recording,
    ledger_lines,
    make_corpus,
    make_recording,
    need_tools,
    ok,
    read_json,
    run_stage,
    stage_env,
    write_corrupt,
)

pytestmark = pytest.mark.train


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, dict[str, Recording]]:
    need_tools()
    audio = tmp_path / "raw audio (Thuận)"
    recordings = make_corpus(audio)
    (audio / "ghi chú.txt").write_text("not audio")
    write_corrupt(audio / "Podcast_Thuận (3)" / "._bài 1.wav")  # macOS resource fork: hidden, passed over
    return audio, recordings


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_inventory_lists_every_audio_file_and_reports_the_corrupt_one(
    corpus: tuple[Path, dict[str, Recording]], tmp_path: Path
) -> None:
    """Every audio file (any extension case, nested, Vietnamese names) with hash, size, duration; corrupt flagged."""
    audio, recordings = corpus
    out = tmp_path / "home" / "ingest"
    progress = tmp_path / "progress.jsonl"
    proc = ok(run_stage("ingest", "--audio", audio, "--out", out, env=stage_env(F5GUARD_PROGRESS=str(progress))))

    inventory = read_json(out / "inventory.json")
    assert inventory["format"] == 1 and inventory["audio_dir"] == str(audio)
    files = {f["name"]: f for f in inventory["files"]}
    assert sorted(files) == sorted([*recordings, "hỏng.mp3"])
    for name, rec in recordings.items():
        entry = files[name]
        assert entry["ok"] is True and entry["reason"] is None
        assert entry["path"] == str(audio / name) and Path(entry["path"]).is_absolute()
        assert entry["size"] == rec.path.stat().st_size
        assert entry["sha256"] == _sha(rec.path)
        assert entry["duration_s"] == pytest.approx(rec.duration, abs=0.1)  # mp3 adds encoder padding
    bad = files["hỏng.mp3"]
    assert bad["ok"] is False and bad["reason"] and bad["duration_s"] is None
    assert bad["sha256"] == _sha(audio / "hỏng.mp3")
    assert any(line.startswith("corrupt: hỏng.mp3: ") for line in proc.stdout.splitlines()), proc.stdout
    assert "3 ok" in proc.stdout and "1 corrupt" in proc.stdout
    last = json.loads(progress.read_text().splitlines()[-1])
    assert (last["done"], last["total"]) == (4, 4)


def test_unchanged_files_reuse_the_previous_hash(corpus: tuple[Path, dict[str, Recording]], tmp_path: Path) -> None:
    """Same size and mtime_ns: the previous inventory's hash is trusted (Drive is slow); a change is rehashed."""
    audio, recordings = corpus
    out = tmp_path / "ingest"
    ok(run_stage("ingest", "--audio", audio, "--out", out))
    # Plant a marker hash: only a run that reuses the previous inventory (no ledger to fall back on) keeps it.
    inventory = read_json(out / "inventory.json")
    wav = next(f for f in inventory["files"] if f["name"].endswith("bài 1.wav"))
    wav["sha256"] = "0" * 64
    (out / "inventory.json").write_text(json.dumps(inventory, ensure_ascii=False))
    (out / "ingest.jsonl").unlink()
    proc = ok(run_stage("ingest", "--audio", audio, "--out", out))
    assert "0 hashed, 4 unchanged" in proc.stdout, proc.stdout
    again = {f["name"]: f for f in read_json(out / "inventory.json")["files"]}
    assert again[wav["name"]]["sha256"] == "0" * 64

    # New content under the same name, and a touched (same bytes, new mtime) file: both are hashed again.
    changed = make_recording(recordings[wav["name"]].path, ["Một câu hoàn toàn mới để thay đổi nội dung."])
    flac = recordings["Giọng đọc/chương một.FLAC"].path
    os.utime(flac, ns=(flac.stat().st_atime_ns, flac.stat().st_mtime_ns + 10**9))
    proc = ok(run_stage("ingest", "--audio", audio, "--out", out))
    assert "2 hashed, 2 unchanged" in proc.stdout, proc.stdout
    files = {f["name"]: f for f in read_json(out / "inventory.json")["files"]}
    assert files[wav["name"]]["sha256"] == _sha(changed.path)
    assert files[wav["name"]]["duration_s"] == pytest.approx(changed.duration, abs=0.05)
    assert files["Giọng đọc/chương một.FLAC"]["sha256"] == _sha(flac)
    assert files["Giọng đọc/chương một.FLAC"]["mtime_ns"] == flac.stat().st_mtime_ns


def test_a_killed_run_keeps_its_hashes_in_the_item_record(
    corpus: tuple[Path, dict[str, Recording]], tmp_path: Path
) -> None:
    """The per-file record (ingest.jsonl) survives a run that never published: the next run hashes nothing."""
    audio, _ = corpus
    out = tmp_path / "ingest"
    ok(run_stage("ingest", "--audio", audio, "--out", out))
    assert len(ledger_lines(out / "ingest.jsonl")) == 4
    (out / "inventory.json").unlink()  # as if killed between the last item and the manifest
    proc = ok(run_stage("ingest", "--audio", audio, "--out", out))
    assert "0 hashed, 4 unchanged" in proc.stdout, proc.stdout
    assert len(ledger_lines(out / "ingest.jsonl")) == 4  # compacted: one line per current file


@pytest.mark.parametrize("case", ["missing", "empty", "all corrupt"])
def test_no_usable_audio_is_bad_input(tmp_path: Path, case: str) -> None:
    """A missing folder, one without audio, or one whose every file is corrupt: exit 2 and one clear line."""
    need_tools()
    audio = tmp_path / "Giọng nói (trống)"
    if case != "missing":
        audio.mkdir()
        (audio / "readme.txt").write_text("no audio here")
    if case == "all corrupt":
        write_corrupt(audio / "hỏng 1.mp3")
        write_corrupt(audio / "hỏng 2.WAV")
    proc = run_stage("ingest", "--audio", audio, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("f5guard.recipe.ingest: audio folder ") and str(audio) in lines[0]
    assert not (tmp_path / "out" / "inventory.json").exists()


def test_recipe_modules_import_without_torch() -> None:
    """The daemon may import the recipe's constants and record reader: none of that pulls in torch."""
    code = (
        "import sys\n"
        "import f5guard.recipe, f5guard.recipe.ledger, f5guard.recipe.cliplan, f5guard.recipe.asr\n"
        "import f5guard.recipe.audio, f5guard.recipe.stagecli\n"
        "import f5guard.recipe.ingest, f5guard.recipe.segment, f5guard.recipe.transcribe\n"
        "heavy = sorted(m for m in ('torch', 'torchaudio', 'whisper', 'silero_vad', 'numpy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=stage_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
