"""The prepare stage: F5-TTS's own preparation published atomically, and the vocab/embedding extension that
fixes F5-TTS #449 #740 #870: a model pretrained on a vocab without Vietnamese letters fine-tunes on Vietnamese
through the real Trainer, old token rows intact; without the extension the same training dies on the size
mismatch."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from f5guard.recipe.extend_vocab import read_vocab
from f5guard.trainer.spec import TrainSpec
from f5guard.trainer.tinydata import TEXTS, make_wavs
from tests.f5_fixtures import TINY_TRAINING, train_env
from tests.recipe_prep_support import last_line, python_json, run_entry

# No Vietnamese letters at all: the "pretrained" model's vocab is plain ASCII.
ENGLISH = ("hello world", "a quick brown fox", "good morning", "see you soon", "thank you all", "one two three",
           "the sun is up", "we jump over it")  # fmt: skip
EMBED = "transformer.text_embed.text_embed.weight"

# Compare an extended checkpoint with its source: old rows bit-equal, new rows what finetune_gradio's
# expand_model_embeddings draws (torch.manual_seed(666), then torch.randn((added, dim))), nothing else touched.
EMBED_CHECK = r"""
import json, sys, torch
from safetensors.torch import load_file
src, ext_path, added = sys.argv[1], sys.argv[2], int(sys.argv[3])
orig = ({"ema_model_state_dict": load_file(src)} if src.endswith(".safetensors")
        else torch.load(src, map_location="cpu", weights_only=True))
ext = torch.load(ext_path, map_location="cpu", weights_only=True)
out = {"keys": sorted(ext)}
for name, prefix in (("ema_model_state_dict", "ema_model."), ("model_state_dict", "")):
    if name not in ext:
        continue
    key = prefix + "transformer.text_embed.text_embed.weight"
    old, new = orig[name][key], ext[name][key]
    torch.manual_seed(666)
    oracle = torch.randn((added, old.shape[1]))
    out[name] = {"shape": list(new.shape), "old_equal": torch.equal(new[: old.shape[0]], old),
                 "new_like_gradio": torch.equal(new[old.shape[0]:], oracle),
                 "others_equal": sorted(ext[name]) == sorted(orig[name]) and all(
                     torch.equal(ext[name][k], v) for k, v in orig[name].items() if k != key)}
print(json.dumps(out))
"""

# Load an extended checkpoint the way training does: placed as pretrained_*, F5-TTS's Trainer.load_checkpoint.
LOAD_CHECK = r"""
import json, sys, torch
from f5guard.checkpoints.resume import place_pretrained
from f5guard.trainer.build import build_trainer
from f5guard.trainer.spec import TrainSpec
spec = TrainSpec.from_json(sys.argv[1])
original = torch.load(sys.argv[2], map_location="cpu", weights_only=True)
old = original["ema_model_state_dict"]["ema_model.transformer.text_embed.text_embed.weight"]
place_pretrained(spec.pretrained, spec.checkpoint_dir)
trainer, _ = build_trainer(spec)
update = trainer.load_checkpoint()
model = trainer.accelerator.unwrap_model(trainer.model).transformer.text_embed.text_embed.weight.detach()
ema = trainer.ema_model.ema_model.transformer.text_embed.text_embed.weight.detach()
k = old.shape[0]
print(json.dumps({"update": int(update), "rows": model.shape[0], "old_rows": k,
                  "model_old_equal": torch.equal(model[:k], old), "ema_old_equal": torch.equal(ema[:k], old)}))
"""

TO_SAFETENSORS = r"""
import sys, torch
from safetensors.torch import save_file
state = torch.load(sys.argv[1], map_location="cpu", weights_only=True)["ema_model_state_dict"]
save_file({k: v.clone().contiguous() for k, v in state.items()}, sys.argv[2])
print("{}")
"""


@dataclass(frozen=True)
class World:
    root: Path
    en_csv: Path
    en_out: Path
    en_ckpt: Path  # the tiny "pretrained" model: trained a few updates on the ASCII vocab
    vi_csv: Path
    vi_out: Path  # prepared with --pretrained en_ckpt


def _dataset(root: Path, texts: tuple[str, ...]) -> Path:
    """Tone wavs (fast, deterministic) with these transcripts."""
    csv_path, _ = make_wavs(root, len(texts), "tones")
    with csv_path.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="|"))[1:]
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="|")
        writer.writerow(["audio_file", "text"])
        writer.writerows((path, text) for (path, _), text in zip(rows, texts, strict=True))
    return csv_path


def _train(root: Path, name: str, **fields: Any) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """python -m f5guard.trainer on a spec; its result and progress events."""
    work = root / name
    spec_fields = {**TINY_TRAINING, "epochs": 1, "checkpoint_dir": str(work / "ckpts"),
                   "progress_path": str(work / "progress.jsonl"), **fields}  # fmt: skip
    spec = work / "spec.json"
    TrainSpec.from_dict({k: str(v) if isinstance(v, Path) else v for k, v in spec_fields.items()}).to_json(spec)
    proc = subprocess.run([sys.executable, "-m", "f5guard.trainer", "--spec", str(spec)], capture_output=True,
                          text=True, env=train_env(), timeout=280, cwd=root, check=False)  # fmt: skip
    path = work / "progress.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return proc, events


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    pytest.importorskip("f5_tts")
    root = tmp_path_factory.mktemp("prepare") / "Giọng (thử) 1"
    en_csv = _dataset(root / "en", ENGLISH)
    en_out = root / "en prepared"
    proc = run_entry("prepare", "--metadata", en_csv, "--out", en_out)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    trained, events = _train(root, "pretrain en", dataset_dir=en_out / "data")
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    assert events[-1]["event"] == "exit" and events[-1]["update"] >= 2
    en_ckpt = root / "pretrain en" / "ckpts" / "model_last.pt"
    vi_csv = _dataset(root / "vi", TEXTS)
    vi_out = root / "vi prepared"
    proc = run_entry("prepare", "--metadata", vi_csv, "--out", vi_out, "--pretrained", en_ckpt,
                     "--pretrained-vocab", en_out / "data" / "vocab.txt")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return World(root, en_csv, en_out, en_ckpt, vi_csv, vi_out)


@pytest.mark.train
def test_prepare_publishes_f5_dataset(world: World) -> None:
    """Without a pretrained model: F5-TTS's files under data/, the vocab built from the data, manifest last,
    no temp folders left."""
    out = world.en_out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == 1 and manifest["rows"] == len(ENGLISH) and manifest["skipped"] == 0
    assert manifest["pretrained_extended"] is None and manifest["added_chars"] == []
    assert sorted(p.name for p in out.iterdir()) == ["data", "manifest.json"]
    assert sorted(p.name for p in (out / "data").iterdir()) == ["duration.json", "raw.arrow", "vocab.txt"]
    vocab = read_vocab(out / "data" / "vocab.txt")
    assert vocab == sorted(set("".join(ENGLISH))) and manifest["vocab_size"] == len(vocab)


@pytest.mark.train
def test_vocab_extension_keeps_old_ids(world: World) -> None:
    """The extended vocab is the pretrained one in its order, then every missing Vietnamese token, sorted."""
    en_vocab = read_vocab(world.en_out / "data" / "vocab.txt")
    vi_vocab = read_vocab(world.vi_out / "data" / "vocab.txt")
    manifest = json.loads((world.vi_out / "manifest.json").read_text())
    added = sorted(set("".join(TEXTS)) - set(en_vocab))
    assert vi_vocab[: len(en_vocab)] == en_vocab, "existing token ids keep their meaning"
    assert vi_vocab[len(en_vocab) :] == added == manifest["added_chars"]
    assert {"ạ", "ẹ", "ệ", "ổ", "ợ"} <= set(added), "letters the Emilia vocab lacks too"
    assert manifest["vocab_size"] == len(vi_vocab)
    assert manifest["pretrained_extended"] == str(world.vi_out / "pretrained_extended.pt")


@pytest.mark.train
def test_extended_embedding_rows(world: World) -> None:
    """Both state dicts grow; old rows bit-equal; new rows drawn like finetune_gradio; training state left out."""
    added = len(json.loads((world.vi_out / "manifest.json").read_text())["added_chars"])
    vocab = read_vocab(world.vi_out / "data" / "vocab.txt")
    report = python_json(EMBED_CHECK, world.en_ckpt, world.vi_out / "pretrained_extended.pt", str(added))
    assert report["keys"] == ["ema_model_state_dict", "model_state_dict"], "no optimizer, scheduler or update"
    for name in ("ema_model_state_dict", "model_state_dict"):
        assert report[name] == {"shape": [len(vocab) + 1, 32], "old_equal": True, "new_like_gradio": True,
                                "others_equal": True}, name  # fmt: skip


@pytest.mark.train
@pytest.mark.slow
def test_trainer_loads_the_extension_and_trains(world: World) -> None:
    """F5-TTS's Trainer.load_checkpoint takes pretrained_extended.pt with no size mismatch and the old rows as they
    were; python -m f5guard.trainer then runs 2+ updates on the Vietnamese data from it."""
    fields = {"dataset_dir": world.vi_out / "data", "tokenizer_path": world.vi_out / "data" / "vocab.txt",
              "pretrained": world.vi_out / "pretrained_extended.pt"}  # fmt: skip
    spec_dir = world.root / "load check"
    spec = spec_dir / "spec.json"
    TrainSpec.from_dict({**TINY_TRAINING, "checkpoint_dir": str(spec_dir / "ckpts"),
                         "progress_path": str(spec_dir / "p.jsonl"),
                         **{k: str(v) for k, v in fields.items()}}).to_json(spec)  # fmt: skip
    loaded = python_json(LOAD_CHECK, spec, world.en_ckpt)
    assert loaded["update"] == 0 and loaded["model_old_equal"] and loaded["ema_old_equal"]
    assert loaded["rows"] == len(read_vocab(world.vi_out / "data" / "vocab.txt")) + 1

    proc, events = _train(world.root, "finetune vi", **fields)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    start = next(e for e in events if e["event"] == "start")
    assert start["checkpoint"] == "pretrained_extended.pt" and start["start_update"] == 0
    assert events[-1] == {**events[-1], "event": "exit", "reason": "finished"} and events[-1]["update"] >= 2


@pytest.mark.train
@pytest.mark.slow
def test_without_the_extension_training_dies_on_size_mismatch(world: World) -> None:
    """The bug being fixed: the original checkpoint with the Vietnamese vocab cannot load."""
    proc, events = _train(world.root, "no extension", dataset_dir=world.vi_out / "data",
                          tokenizer_path=world.vi_out / "data" / "vocab.txt", pretrained=world.en_ckpt)  # fmt: skip
    assert proc.returncode == 1
    log = proc.stdout + proc.stderr
    assert "size mismatch" in log and "text_embed.text_embed.weight" in log, log[-3000:]
    assert events[-1]["event"] == "exit" and events[-1]["reason"] == "error"
    assert "size mismatch" in events[-1]["detail"], events[-1]


@pytest.mark.train
@pytest.mark.slow
def test_safetensors_pretrained(world: World, tmp_path: Path) -> None:
    """A .safetensors pretrained (an EMA state dict, like F5TTS_v1_Base's) extends the same way."""
    st = tmp_path / "pretrained_tiny.safetensors"
    python_json(TO_SAFETENSORS, world.en_ckpt, st)
    out = tmp_path / "vi (st)"
    proc = run_entry("prepare", "--metadata", world.vi_csv, "--out", out, "--pretrained", st,
                     "--pretrained-vocab", world.en_out / "data" / "vocab.txt")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    added = len(json.loads((out / "manifest.json").read_text())["added_chars"])
    report = python_json(EMBED_CHECK, st, out / "pretrained_extended.pt", str(added))
    assert report["keys"] == ["ema_model_state_dict"]
    assert report["ema_model_state_dict"]["old_equal"] and report["ema_model_state_dict"]["new_like_gradio"]
    assert report["ema_model_state_dict"]["others_equal"]
    assert read_vocab(out / "data" / "vocab.txt") == read_vocab(world.vi_out / "data" / "vocab.txt")


@pytest.mark.train
def test_vocab_that_does_not_match_the_embedding_fails(world: World, tmp_path: Path) -> None:
    """A pretrained vocab of another size than the embedding: exit 1, one line, nothing published."""
    out = tmp_path / "mismatch"
    proc = run_entry("prepare", "--metadata", world.vi_csv, "--out", out, "--pretrained", world.en_ckpt,
                     "--pretrained-vocab", world.vi_out / "data" / "vocab.txt")  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-2000:]
    line = proc.stderr.strip()
    assert "\n" not in line, "one line on stderr; F5-TTS's progress bars went to the log"
    assert line.startswith(f"f5guard.recipe.prepare: pretrained checkpoint {world.en_ckpt}: text embedding ")
    assert line.endswith("they do not belong together")
    assert sorted(p.name for p in out.iterdir()) == [], "no manifest, no data, no temp folder"


@pytest.mark.train
def test_rerun_replaces_outputs(world: World, tmp_path: Path) -> None:
    """Same out dir twice: with a pretrained whose vocab already covers the data (nothing added), then without
    one: the stale pretrained_extended.pt goes, data/ is swapped whole."""
    out = tmp_path / "again"
    en_vocab = world.en_out / "data" / "vocab.txt"
    first = run_entry("prepare", "--metadata", world.en_csv, "--out", out, "--pretrained", world.en_ckpt,
                      "--pretrained-vocab", en_vocab)  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["added_chars"] == [] and (out / "pretrained_extended.pt").is_file()
    assert read_vocab(out / "data" / "vocab.txt") == read_vocab(en_vocab)
    second = run_entry("prepare", "--metadata", world.vi_csv, "--out", out)
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads((out / "manifest.json").read_text())["pretrained_extended"] is None
    assert sorted(p.name for p in out.iterdir()) == ["data", "manifest.json"]
    assert read_vocab(out / "data" / "vocab.txt") == sorted(set("".join(TEXTS)))


@pytest.mark.train
def test_relative_audio_path_fails_in_one_line(tmp_path: Path) -> None:
    """F5-TTS needs absolute audio paths (raw.arrow stores them): exit 1 naming the CSV; no manifest."""
    meta = tmp_path / "metadata (1).csv"
    meta.write_text("audio_file|text\nwavs/a.wav|xin chào\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    proc = run_entry("prepare", "--metadata", meta, "--out", out)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"f5guard.recipe.prepare: prepare {meta}: audio_file must be an absolute")
    assert proc.stderr.count("\n") == 1
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--metadata", "missing.csv"], "no such file"),
        (["--metadata", "{meta}", "--pretrained", "{meta}"], "go together"),
        (["--metadata", "{meta}", "--pretrained", "{meta}", "--pretrained-vocab", "{meta}"], ".pt or .safetensors"),
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    """Missing inputs and half-given pretrained options are usage errors (exit 2)."""
    meta = tmp_path / "m.csv"
    meta.write_text("audio_file|text\n")
    proc = run_entry("prepare", *[a.format(meta=meta) for a in args], "--out", tmp_path / "out")
    assert proc.returncode == 2 and words in last_line(proc.stderr)
