"""The separate stage, for real: a tiny randomly initialised HTDemucs built here (no download) and loaded through
every layout ``--model`` accepts -- a .th package, a .safetensors export, a .yaml bag with a checksummed .th,
and the released name ``htdemucs`` served from torch.hub's cache -- separating wavs and flacs with Vietnamese
names, resuming file by file after a SIGKILL, and publishing an inventory the segment stage reads like ingest's."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from f5guard.recipe.separate import vocals_names
from tests.f5_fixtures import train_env
from tests.recipe_prep_support import python_json, run_entry

# One tiny HTDemucs (91k parameters, 2 s segments), saved in each layout; plus a few sources.
MAKE = r"""
import json, hashlib, sys, torch, numpy as np, soundfile as sf
from pathlib import Path
from demucs.htdemucs import HTDemucs
from demucs.states import get_state, save_with_checksum
from safetensors.torch import save_file
root = Path(sys.argv[1])
torch.manual_seed(0)
kwargs = dict(sources=["drums", "bass", "other", "vocals"], channels=4, depth=4, t_layers=1, t_heads=1,
              dconv_comp=1, t_hidden_scale=1.0, dconv_depth=1, segment=2)
model = HTDemucs(**kwargs)
package = {"klass": HTDemucs, "args": (), "kwargs": kwargs, "state": get_state(model, None)}
models = root / "models"
(models / "bag").mkdir(parents=True)
torch.save(package, models / "tiny.th")
save_file({k: v.contiguous() for k, v in package["state"].items()}, str(models / "tiny.safetensors"),
          metadata={"klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": json.dumps(kwargs)})
save_with_checksum(package, models / "bag" / "0a1b2c3d.th")
(models / "bag" / "vocals_bag.yaml").write_text("models: ['0a1b2c3d']\n")
# the released name, served from torch.hub's cache (the file name htdemucs' download URL ends in)
(root / "torch" / "hub" / "checkpoints").mkdir(parents=True)
torch.save(package, root / "torch" / "hub" / "checkpoints" / "955717e8-8726e21a.th")
audio = root / "audio (thử)"
(audio / "ngày 2").mkdir(parents=True)
files = []
for i, (name, rate, channels) in enumerate([("bài 1 (live).wav", 44100, 2), ("ngày 2/giọng nói.flac", 22050, 1),
                                            ("hỏng.mp3", 0, 0), ("bài 1 (live).m4a", 0, 0)]):
    path = audio / name
    if rate:
        t = np.arange(int(rate * 2.5)) / rate
        y = 0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t) + 0.05 * np.random.default_rng(i).standard_normal(t.shape)
        sf.write(path, (np.stack([y, 0.6 * y], 1) if channels == 2 else y).astype("float32"), rate)
    else:
        path.write_bytes(b"not audio at all " + name.encode())
    data = path.read_bytes()
    files.append({"path": str(path), "name": name, "size": len(data), "mtime_ns": path.stat().st_mtime_ns,
                  "sha256": hashlib.sha256(data).hexdigest(), "duration_s": 2.5, "ok": True, "reason": None})
files[-1].update(ok=False, reason="no audio samples in the file", duration_s=None)  # ingest's verdict
(root / "inventory.json").write_text(json.dumps({"format": 1, "audio_dir": str(audio), "files": files}))
print(json.dumps({"ok": True}))
"""


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("demucs")
    root = tmp_path_factory.mktemp("separate") / "kit (1)"
    root.mkdir()
    python_json(MAKE, root)
    return root


@pytest.fixture(scope="module")
def reference(kit: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The vocals' sha256s of one uninterrupted run with the .th package."""
    out = tmp_path_factory.mktemp("reference") / "out"
    proc = _separate(kit, out, kit / "models" / "tiny.th")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return [e["sha256"] for e in _inventory(out)["files"][:2]]


def _env(kit: Path) -> dict[str, str]:
    # offline for sure: the hub is off (train_env), and any URL download hits a closed port at once instead of hanging
    return {"TORCH_HOME": str(kit / "torch"), "https_proxy": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9", "OMP_NUM_THREADS": "2"}  # fmt: skip


def _separate(kit: Path, out: Path, model: str | Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_entry("separate", "--inventory", kit / "inventory.json", "--out", out, "--model", model,
                     "--device", "cpu", *extra, env=_env(kit))  # fmt: skip


def _inventory(out: Path) -> dict[str, Any]:
    return json.loads((out / "inventory.json").read_text(encoding="utf-8"))


@pytest.mark.train
def test_vocals_inventory_in_ingest_format(kit: Path, tmp_path: Path) -> None:
    """Every usable source gets mono vocals at the model's rate, named after it (suffix replaced, folders kept);
    undecodable and ingest-rejected sources stay listed with ok=false and a reason."""
    import soundfile as sf

    out = tmp_path / "tách (giọng)"
    proc = _separate(kit, out, kit / "models" / "tiny.th")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "skipped: bài 1 (live).m4a: no audio samples in the file" in proc.stdout
    source = json.loads((kit / "inventory.json").read_text())
    inv = _inventory(out)
    assert inv["format"] == 1 and inv["audio_dir"] == str(out / "vocals")
    assert [e["name"] for e in inv["files"]] == ["bài 1 (live).wav", "ngày 2/giọng nói.wav", "hỏng.mp3",
                                                 "bài 1 (live).m4a"]  # fmt: skip
    for entry, src in zip(inv["files"][:2], source["files"][:2], strict=True):
        path = Path(entry["path"])
        assert path == out / "vocals" / entry["name"] and entry["ok"] is True and entry["reason"] is None
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and entry["size"] == path.stat().st_size
        assert entry["source_sha256"] == src["sha256"] and entry["source_name"] == src["name"]
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")
        assert abs(info.duration - 2.5) < 0.01 and entry["duration_s"] == pytest.approx(2.5, abs=0.01)
    assert inv["files"][2]["ok"] is False and inv["files"][2]["reason"].startswith("cannot decode for separation")
    assert inv["files"][3] == source["files"][3], "ingest's rejection passes through unchanged"
    assert sorted(p.name for p in out.iterdir()) == ["inventory.json", "separate.jsonl", "vocals"]


@pytest.mark.train
def test_rerun_skips_done_sources_and_redoes_changed_ones(kit: Path, tmp_path: Path) -> None:
    """A second run loads no model; a source whose content hash changed is separated again, alone."""
    out = tmp_path / "out"
    assert _separate(kit, out, kit / "models" / "tiny.th").returncode == 0
    first = _inventory(out)
    again = _separate(kit, out, kit / "models" / "tiny.th")
    assert again.returncode == 0 and "3 already separated, 0 to do" in again.stdout
    assert "model " not in again.stdout, "nothing to do: the model is not even loaded"
    assert _inventory(out) == first

    changed = json.loads((kit / "inventory.json").read_text())
    changed["files"][0]["sha256"] = "f" * 64  # as if the recording had been re-exported
    inventory = tmp_path / "inventory (2).json"
    inventory.write_text(json.dumps(changed))
    proc = run_entry("separate", "--inventory", inventory, "--out", out, "--model", kit / "models" / "tiny.th",
                     "--device", "cpu", env=_env(kit))  # fmt: skip
    assert proc.returncode == 0 and "2 already separated, 1 to do" in proc.stdout
    assert "vocals: bài 1 (live).wav" in proc.stdout and "giọng nói" not in proc.stdout.split("to do")[1]
    assert _inventory(out)["files"][0]["source_sha256"] == "f" * 64


@pytest.mark.train
@pytest.mark.slow
def test_sigkill_resumes_file_by_file(kit: Path, tmp_path: Path, reference: list[str]) -> None:
    """Killed after its first vocals file, the stage publishes no inventory; the rerun keeps what was finished
    and ends with exactly the vocals of an uninterrupted run (seeded: same argv, same bytes)."""
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "f5guard.recipe.separate", "--inventory", str(kit / "inventory.json"), "--out",
            str(out), "--model", str(kit / "models" / "tiny.th"), "--device", "cpu"]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=train_env(**_env(kit)),
                          start_new_session=True) as proc:  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("vocals: "):
                os.killpg(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "inventory.json").exists()
    rerun = _separate(kit, out, kit / "models" / "tiny.th")
    assert rerun.returncode == 0, rerun.stderr
    done_before = int(rerun.stdout.split(" already separated")[0].rsplit(" ", 1)[1])
    assert done_before >= 1
    assert [e["sha256"] for e in _inventory(out)["files"][:2]] == reference


@pytest.mark.train
@pytest.mark.slow
@pytest.mark.parametrize("layout", ["tiny.safetensors", "bag", "bag/vocals_bag.yaml", "htdemucs"])
def test_every_model_layout_loads_the_same_weights(kit: Path, tmp_path: Path, reference: list[str],
                                                   layout: str) -> None:  # fmt: skip
    """A .safetensors export, a folder with a bag, the bag's .yaml, and the released name (from torch.hub's cache,
    the hub offline) all load the same tiny weights: the same vocals as the .th package."""
    out = tmp_path / "out"
    model = layout if layout == "htdemucs" else str(kit / "models" / layout)
    proc = _separate(kit, out, model)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert [e["sha256"] for e in _inventory(out)["files"][:2]] == reference


@pytest.mark.train
def test_released_name_without_network_fails_in_one_line(kit: Path, tmp_path: Path) -> None:
    """No cached copy and no network: exit 1, one line saying the model needs a download or a local path."""
    empty = tmp_path / "torch home"
    proc = run_entry("separate", "--inventory", kit / "inventory.json", "--out", tmp_path / "out", "--model",
                     "htdemucs", env={**_env(kit), "TORCH_HOME": str(empty)}, timeout=120)  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-2000:]
    line = proc.stderr.strip()
    assert "\n" not in line and line.startswith("f5guard.recipe.separate: load demucs model htdemucs: ")
    assert "--model PATH" in line and not (tmp_path / "out" / "inventory.json").exists()


def test_bad_inputs_exit_2(tmp_path: Path) -> None:
    """No inventory, not an inventory, nothing usable, a model path that is not there: exit 2, one line."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 1}')
    none_ok = tmp_path / "none.json"
    none_ok.write_text(
        json.dumps(
            {
                "format": 1,
                "audio_dir": "/x",
                "files": [{"path": "/x/a.wav", "name": "a.wav", "sha256": "0", "ok": False, "reason": "truncated"}],
            }
        )
    )
    good = tmp_path / "good.json"
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"x")
    good.write_text(
        json.dumps(
            {
                "format": 1,
                "audio_dir": str(tmp_path),
                "files": [{"path": str(audio), "name": "a.wav", "sha256": "0" * 64, "ok": True, "reason": None}],
            }
        )
    )
    for inventory, model, words in (
        (tmp_path / "missing.json", "htdemucs", "run the ingest stage first"),
        (bad, "htdemucs", "not an f5guard inventory"),
        (none_ok, "htdemucs", "none of its 1 files is usable"),
        (good, str(tmp_path / "nope" / "model.th"), "no such file or folder"),
    ):
        proc = run_entry("separate", "--inventory", inventory, "--out", tmp_path / "out", "--model", model,
                         "--device", "cpu")  # fmt: skip
        assert proc.returncode == 2, (words, proc.stdout[-2000:], proc.stderr)
        assert proc.stderr.count("\n") == 1 and words in proc.stderr
    shutil.rmtree(tmp_path / "out", ignore_errors=True)


def test_vocals_names_never_collide() -> None:
    """Suffix replaced; two sources that would meet keep their suffix; paths cannot leave the vocals folder."""
    entries = [
        {"name": n, "sha256": f"{i:064d}"}
        for i, n in enumerate(["a.mp3", "a.m4a", "b.WAV", "ngày 2/c (1).flac", "../../etc/x.wav", "/abs/y.ogg"])
    ]
    assert vocals_names(entries) == {
        "a.mp3": "a.mp3.wav", "a.m4a": "a.m4a.wav", "b.WAV": "b.wav", "ngày 2/c (1).flac": "ngày 2/c (1).wav",
        "../../etc/x.wav": "x.wav", "/abs/y.ogg": "y.wav",
    }  # fmt: skip
