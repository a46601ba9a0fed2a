"""A short real pipeline for the `watch` tests: an item stage and a torch-free F5-TTS-shaped trainer (command
mode: tqdm lines, ``model_last.pt`` rewritten in place as a torch.save-shaped zip) that finishes by itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ITEMS = """
import sys, time
from f5guard.itemprogress import ItemProgress
total, step = int(sys.argv[1]), float(sys.argv[2])
with ItemProgress(total=total) as progress:
    for _ in range(total):
        time.sleep(step)
        progress.advance()
"""

TRAINER = r'''
"""Finite torch-free F5-TTS stand-in: tqdm lines, model_last.pt saved in place every N updates."""
import os, pickle, sys, time, zipfile

ckpts, total, step_s, save_every = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
os.makedirs(ckpts, exist_ok=True)


def save(path, update):
    doc = {"model_state_dict": {"w": update}, "optimizer_state_dict": {"state": {}, "param_groups": []},
           "ema_model_state_dict": {"step": update}, "scheduler_state_dict": {"last_epoch": update}, "update": update}
    with open(path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(doc, protocol=2))
        archive.writestr("archive/version", b"3\n")
        archive.writestr("archive/data/pad", bytes(4096))


for update in range(1, total + 1):
    time.sleep(step_s)
    loss = 1.0 / update
    print(f"Epoch 1/1: {100 * update // total:3d}%|  | {update}/{total} [00:01<00:10, {1 / step_s:.2f}update/s, "
          f"loss={loss:.4f}, update={update}]", flush=True)
    if update % save_every == 0:
        save(os.path.join(ckpts, "model_last.pt"), update)
        print(f"Saved last checkpoint at update {update}", flush=True)
'''


def pipeline(root: Path, *, items: int = 6, item_s: float = 0.2, updates: int = 30, step_s: float = 0.1,
             save_every: int = 10, fail: bool = False) -> str:  # fmt: skip
    """The config body: stage ``cut`` (items), then ``train`` (the stand-in), or a stage that fails."""
    (root / "items.py").write_text(ITEMS)
    (root / "trainer.py").write_text(TRAINER)
    ckpts = root / "work" / "ckpts"
    train = ["{python}", str(root / "trainer.py"), str(ckpts), str(updates), str(step_s), str(save_every)]
    last = (
        '[[runs.stages]]\nname = "bad"\ncommand = ["{python}", "-c", "import sys; print(\'no audio\'); sys.exit(3)"]\n'
        if fail
        else f'[[runs.stages]]\nname = "train"\ntype = "train"\nmode = "command"\ncheckpoint_dir = "{ckpts}"\n'
        f"hang_minutes = 0\nstop_grace_s = 2\ncommand = {json.dumps(train)}\n"
    )
    cut = ["{python}", str(root / "items.py"), str(items), str(item_s)]
    return f'[[runs]]\nname = "voice"\n[[runs.stages]]\nname = "cut"\ncommand = {json.dumps(cut)}\n{last}'


def watch_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "f5guard", "watch", *args]
