"""Make F5-TTS resume from the newest valid checkpoint: the file it will pick, model_last.pt put right, a
pretrained file placed where it looks, and f5guard's own temporary copies in the checkpoint dir.

F5-TTS's ``load_checkpoint`` prefers model_last.pt over everything, so when a newer checkpoint sits under
another name it is copied over model_last.pt (verified first); files that would crash it are quarantined.
Torch-free: every file is judged by ``inspect``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from f5guard.checkpoints.finite import nonfinite
from f5guard.checkpoints.inspect import (
    CHECKPOINT_SUFFIXES,
    LAST_NAME,
    CheckpointInfo,
    CheckpointInvalid,
    Quarantined,
    Scan,
    inspect_checkpoint,
    quarantine,
    scan_dir,
)
from f5guard.fsutil import fsync_dir, publishing

TMP_MARK = ".f5guard-tmp-"  # our own copies in flight: never ends in .pt, so F5-TTS never sees them


def temp_copy_path(directory: Path, name: str) -> Path:
    """Where a copy that becomes ``directory/name`` is written first; prepare_resume removes it after a crash.

    It ends in the writer's pid, so a copy still being written by a live process is left alone.
    """
    return directory / f".{name}{TMP_MARK}{os.getpid()}"


@dataclass(frozen=True)
class ResumePlan:
    """What prepare_resume found and did; ``chosen`` is None when training starts from scratch."""

    chosen: CheckpointInfo | None
    quarantined: list[Quarantined] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)  # one human line each, for the log

    @property
    def start_update(self) -> int:
        return self.chosen.update if self.chosen is not None else 0


def f5tts_pick(names: list[str]) -> str | None:
    """The file F5-TTS 1.1.22's Trainer.load_checkpoint would load from these names (None: start at 0)."""
    if not any(n.endswith(CHECKPOINT_SUFFIXES) for n in names):
        return None
    if LAST_NAME in names:
        return LAST_NAME  # always, even when a newer model_{N}.pt exists (#924)
    candidates = [n for n in names if n.startswith(("model_", "pretrained_")) and n.endswith(CHECKPOINT_SUFFIXES)]
    numbered = [n for n in candidates if n.startswith("model_")]
    if numbered:
        return max(numbered, key=lambda n: int("".join(filter(str.isdigit, n)) or "-1"))
    pretrained = [n for n in names if n.startswith("pretrained_") and n.endswith(CHECKPOINT_SUFFIXES)]
    return pretrained[0] if pretrained else None  # listdir order in F5-TTS: the first one found


def prepare_resume(ckpt_dir: str | os.PathLike[str]) -> ResumePlan:
    """Make F5-TTS's own load_checkpoint pick the newest valid checkpoint; quarantine the corrupt ones.

    Call it while no trainer writes to ``ckpt_dir``: a checkpoint being written looks truncated.
    """
    directory = Path(ckpt_dir)
    actions = _remove_stale_temps(directory)
    scan = scan_dir(directory)
    quarantined = [quarantine(directory / name, reason) for name, reason in sorted(scan.invalid.items())]
    scan, broken = _finite_newest(scan)
    quarantined += [quarantine(directory / name, reason) for name, reason in broken]
    actions += [f"quarantined {q.name} as {q.moved_to}: {q.reason}" for q in quarantined]
    newest = scan.newest()
    if newest is None:
        return ResumePlan(None, quarantined, actions)
    by_name = {c.name: c for c in scan.valid}
    picked = by_name.get(f5tts_pick(sorted(by_name)) or "")
    if picked is not None and _at_least_as_new(picked, newest):
        return ResumePlan(picked, quarantined, actions)
    if newest.path.suffix != ".pt":  # a .safetensors file cannot become model_last.pt (torch.load reads that)
        return ResumePlan(picked, quarantined, actions)
    # F5-TTS would load something older: put the newest where it always looks first.
    actions += _install_as_last(directory, newest, by_name.get(LAST_NAME))
    return ResumePlan(inspect_checkpoint(directory / LAST_NAME), quarantined, actions)


def _finite_newest(scan: Scan) -> tuple[Scan, list[tuple[str, str]]]:
    """Drop the newest checkpoints while their weights are not finite (finite.py reads them), so resume picks the
    newest finite one; older ones are not read (resume never reaches them). The dropped ones, with why."""
    valid, broken = list(scan.valid), []
    while (newest := Scan(valid, {}).newest()) is not None:
        try:
            reason = nonfinite(newest.path)
        except CheckpointInvalid as err:
            reason = str(err)
        if reason is None:
            break
        valid.remove(newest)
        broken.append((newest.name, reason))
    return Scan(valid, scan.invalid), broken


def _remove_stale_temps(directory: Path) -> list[str]:
    """Delete the half-made copies a crash left (ours only, and only those whose writer is gone)."""
    actions: list[str] = []
    if not directory.is_dir():
        return actions
    for name in os.listdir(directory):
        if TMP_MARK in name and not _writer_alive(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / name)
            actions.append(f"removed stale temporary copy {name}")
    return actions


def _writer_alive(tmp_name: str) -> bool:
    """Temporary copies end in the writer's pid; one still being written by a live process is not stale."""
    pid = tmp_name.rsplit(TMP_MARK, 1)[-1]
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True  # another thread of this process (the daemon's restore) may be writing it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _at_least_as_new(picked: CheckpointInfo, newest: CheckpointInfo) -> bool:
    if picked.kind == "pretrained" and newest.kind != "pretrained":
        return False
    return picked.update >= newest.update


def _install_as_last(directory: Path, newest: CheckpointInfo, old_last: CheckpointInfo | None) -> list[str]:
    """Copy ``newest`` over model_last.pt atomically, keeping an older valid model_last.pt under a new name.

    A copy, not a hard link: torch.save truncates and rewrites model_last.pt in place, which would also
    destroy the numbered file sharing its inode.
    """
    actions: list[str] = []
    last = directory / LAST_NAME
    tmp = temp_copy_path(directory, LAST_NAME)
    try:
        with newest.path.open("rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=16 * 1024 * 1024)
            dst.flush()
            os.fsync(dst.fileno())
        # the copy must be as good as its source before it becomes the file F5-TTS loads
        inspect_checkpoint(tmp, kind="last")
        if old_last is not None:
            # As a numbered file it stays a candidate F5-TTS understands; never deleted.
            aside = directory / f"model_{old_last.update}.pt"
            if aside.exists():
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                aside = directory / f"{LAST_NAME}.superseded-{stamp}"
            os.rename(last, aside)
            actions.append(f"kept the older {LAST_NAME} (update {old_last.update}) as {aside.name}")
        os.replace(tmp, last)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(directory)
    actions.append(f"copied {newest.name} (update {newest.update}) to {LAST_NAME}")
    return actions


def place_pretrained(source: str | os.PathLike[str], ckpt_dir: str | os.PathLike[str]) -> CheckpointInfo:
    """Put a local pretrained file where F5-TTS looks for one (pretrained_<name>), validated first.

    A hard link when source and target share a filesystem (nothing ever writes pretrained_* in place),
    else an atomic copy; an existing valid file of that name is kept.
    """
    src = Path(source)
    inspect_checkpoint(src, kind="pretrained")
    directory = Path(ckpt_dir)
    directory.mkdir(parents=True, exist_ok=True)
    name = src.name if src.name.startswith("pretrained_") else f"pretrained_{src.name}"
    target = directory / name
    if target.exists():
        with contextlib.suppress(CheckpointInvalid):
            return inspect_checkpoint(target)
        quarantine(target, "invalid pretrained file replaced by a fresh copy")
    with publishing(target, temp_copy_path(directory, name)) as tmp:
        try:
            os.link(src, tmp)
        except OSError:  # another filesystem (Drive), or links unsupported
            shutil.copyfile(src, tmp)
    return inspect_checkpoint(target)
