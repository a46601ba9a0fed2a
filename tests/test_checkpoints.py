"""Checkpoint validation without torch, the newest-valid choice, quarantine, and resume preparation."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from f5guard.checkpoints.copying import file_sha256
from f5guard.checkpoints.inspect import LAST_NAME, CheckpointInvalid, inspect_checkpoint, quarantine, scan_dir
from f5guard.checkpoints.resume import f5tts_pick, place_pretrained, prepare_resume

MakeCkpt = Callable[..., Path]


@pytest.fixture
def make_ckpt() -> MakeCkpt:
    """make_ckpt(path, update, counter="update", ema_only=False): a torch.save'd dict shaped like F5-TTS's."""
    torch = pytest.importorskip("torch")
    AdamW = torch.optim.AdamW
    LinearLR, SequentialLR = torch.optim.lr_scheduler.LinearLR, torch.optim.lr_scheduler.SequentialLR

    def make(path: Path, update: int = 0, counter: str = "update", ema_only: bool = False) -> Path:
        torch.manual_seed(update)
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
        optimizer = AdamW(model.parameters(), lr=1e-3)
        scheduler = SequentialLR(
            optimizer, [LinearLR(optimizer, 1e-8, 1.0, 2), LinearLR(optimizer, 1.0, 1e-8, 9)], milestones=[2]
        )
        for _ in range(max(update, 1)):
            model(torch.randn(2, 4)).sum().backward()
            optimizer.step()
            scheduler.step()
        ema = {f"ema_model.{k}": v.clone().half() for k, v in model.state_dict().items()}
        ema |= {"initted": torch.tensor(True), "step": torch.tensor(update)}
        document: dict[str, Any] = {"ema_model_state_dict": ema}
        if not ema_only:
            document |= {
                "model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict(),
                "scheduler_state_dict": scheduler.state_dict(),
                counter: update,
            }
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(document, path)
        return path

    return make


def _truncate(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def _rezip(path: Path, edit: Callable[[str, bytes], bytes | None]) -> Path:
    """Rewrite a torch zip entry by entry; ``edit`` returns new bytes, or None to drop the entry."""
    with zipfile.ZipFile(path) as archive:
        entries = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries:
            new = edit(name, data)
            if new is not None:
                archive.writestr(name, new)
    return path


def _names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# ----------------------------------------------------------------------------------------- one file
@pytest.mark.train
def test_valid_checkpoints_report_kind_update_size(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    """A full F5-TTS-shaped checkpoint: kind from the name, update from data.pkl, size and mtime from stat."""
    info = inspect_checkpoint(make_ckpt(tmp_path / "model_12.pt", 12))
    assert (info.name, info.kind, info.update, info.legacy_step) == ("model_12.pt", "numbered", 12, False)
    assert info.size == (tmp_path / "model_12.pt").stat().st_size
    assert info.mtime == (tmp_path / "model_12.pt").stat().st_mtime
    assert inspect_checkpoint(make_ckpt(tmp_path / LAST_NAME, 3)).kind == "last"
    pretrained = inspect_checkpoint(make_ckpt(tmp_path / "pretrained_base.pt", ema_only=True))
    assert (pretrained.kind, pretrained.update) == ("pretrained", 0)


@pytest.mark.train
def test_legacy_step_key(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    """Checkpoints from before F5-TTS f992c4e store `step`; it is read as the update (grad accumulation 1)."""
    info = inspect_checkpoint(make_ckpt(tmp_path / LAST_NAME, 7, counter="step"))
    assert (info.update, info.legacy_step) == (7, True)


@pytest.mark.train
@pytest.mark.parametrize("keep", [0, 10, 100, -1, -22, 0.5])
def test_truncated_checkpoint_is_invalid(tmp_path: Path, make_ckpt: MakeCkpt, keep: float) -> None:
    """A write cut short anywhere (no central directory) fails fast with one line naming the file."""
    path = make_ckpt(tmp_path / LAST_NAME, 5)
    size = path.stat().st_size
    _truncate(path, int(size * keep) if isinstance(keep, float) else keep % size if keep < 0 else keep)
    with pytest.raises(CheckpointInvalid) as caught:
        inspect_checkpoint(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, os.urandom(4096), b"PK\x03\x04" + os.urandom(500)])
def test_garbage_is_invalid(tmp_path: Path, content: bytes) -> None:
    """Empty, text, random and fake-zip-magic files are rejected (torch's own check reads only 4 bytes)."""
    path = tmp_path / LAST_NAME
    path.write_bytes(content)
    with pytest.raises(CheckpointInvalid, match=re.escape(str(path))):
        inspect_checkpoint(path)


def test_missing_file_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(CheckpointInvalid, match="cannot read checkpoint"):
        inspect_checkpoint(tmp_path / "model_3.pt")


def test_malicious_pickle_is_refused_not_run(tmp_path: Path) -> None:
    """data.pkl naming any global outside the allow-list is refused; nothing from the file is executed."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "model_1.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model_1/data.pkl", pickle.dumps({"update": 1, "x": Evil()}, protocol=2))
        archive.writestr("model_1/version", b"3\n")
    with pytest.raises(CheckpointInvalid, match="forbidden global"):
        inspect_checkpoint(path)
    assert not marker.exists()


def test_zip_that_is_not_torch_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "model_1.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/readme.txt", b"hello")
        archive.writestr("b/other.txt", b"world")
    with pytest.raises(CheckpointInvalid, match=r"not a torch\.save archive"):
        inspect_checkpoint(path)


@pytest.mark.train
def test_missing_or_short_tensor_data_is_invalid(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    """Every storage data.pkl refers to must exist with numel * itemsize bytes."""
    dropped = _rezip(make_ckpt(tmp_path / "model_1.pt", 1), lambda n, d: None if n.endswith("/data/0") else d)
    with pytest.raises(CheckpointInvalid, match="lacks tensor data"):
        inspect_checkpoint(dropped)
    short = _rezip(make_ckpt(tmp_path / "model_2.pt", 2), lambda n, d: d[:-4] if n.endswith("/data/1") else d)
    with pytest.raises(CheckpointInvalid, match="tensor data 1 has"):
        inspect_checkpoint(short)


@pytest.mark.train
def test_incomplete_documents_are_invalid(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    """A numbered/last file without the training state, or a non-dict document, is not resumable."""
    torch = pytest.importorskip("torch")

    torch.save({"ema_model_state_dict": {}, "update": 3}, tmp_path / "model_3.pt")
    with pytest.raises(CheckpointInvalid, match="lacks model_state_dict, optimizer_state_dict"):
        inspect_checkpoint(tmp_path / "model_3.pt")
    make_ckpt(tmp_path / LAST_NAME, ema_only=True)
    with pytest.raises(CheckpointInvalid, match="lacks model_state_dict"):
        inspect_checkpoint(tmp_path / LAST_NAME)
    parts = {"model_state_dict": [1], "optimizer_state_dict": {}, "ema_model_state_dict": {}}
    torch.save({**parts, "scheduler_state_dict": {}, "update": 5}, tmp_path / "model_5.pt")
    with pytest.raises(CheckpointInvalid, match="model_state_dict not a dict"):
        inspect_checkpoint(tmp_path / "model_5.pt")
    torch.save([1, 2, 3], tmp_path / "model_4.pt")
    with pytest.raises(CheckpointInvalid, match="holds a list"):
        inspect_checkpoint(tmp_path / "model_4.pt")


def _safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> Path:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blob, offset = b"", 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blob += data
        offset += len(data)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + blob)
    return path


def test_safetensors_pretrained(tmp_path: Path) -> None:
    """A .safetensors pretrained file is checked by its header; cut short, it is invalid."""
    path = _safetensors(tmp_path / "pretrained_v1.safetensors", {"w": ("F32", [2, 2], b"\0" * 16)})
    info = inspect_checkpoint(path)
    assert (info.kind, info.update) == ("pretrained", 0)
    _truncate(path, path.stat().st_size - 1)
    with pytest.raises(CheckpointInvalid, match="safetensors header says"):
        inspect_checkpoint(path)


@pytest.mark.train
def test_inspecting_never_imports_torch(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    """The daemon imports f5guard.checkpoints.inspect and inspects real files: torch must stay out of the process."""
    path = make_ckpt(tmp_path / "model_2.pt", 2)
    script = (
        f"import sys, f5guard.checkpoints.inspect as c; info = c.inspect_checkpoint({str(path)!r}); "
        "assert info.update == 2; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_module_does_not_import_torch() -> None:
    """Importing the module alone keeps torch out (invariant 7: the daemon stays light)."""
    script = "import f5guard.checkpoints.inspect, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


# ------------------------------------------------------------------------------------ a directory
def test_f5tts_pick_follows_load_checkpoint() -> None:
    """model_last.pt always wins; else the highest model_N by digits; else the first pretrained_*."""
    assert f5tts_pick([]) is None
    assert f5tts_pick(["notes.txt"]) is None
    assert f5tts_pick(["model_9.pt", LAST_NAME, "model_100.pt"]) == LAST_NAME
    assert f5tts_pick(["model_9.pt", "model_100.pt", "pretrained_x.pt"]) == "model_100.pt"
    assert f5tts_pick(["pretrained_x.safetensors", "model_last.pt.corrupt-1"]) == "pretrained_x.safetensors"


def test_quarantine_renames_never_deletes(tmp_path: Path) -> None:
    """<name>.corrupt-<UTC stamp>, same bytes; a second quarantine in the same second gets a suffix."""
    first = tmp_path / LAST_NAME
    first.write_bytes(b"one")
    moved = quarantine(first, "truncated")
    assert not first.exists()
    assert re.fullmatch(r"model_last\.pt\.corrupt-\d{8}T\d{6}Z", moved.moved_to)
    assert (tmp_path / moved.moved_to).read_bytes() == b"one"
    first.write_bytes(b"two")
    again = quarantine(first, "truncated")
    assert again.moved_to != moved.moved_to
    assert {(tmp_path / m).read_bytes() for m in (moved.moved_to, again.moved_to)} == {b"one", b"two"}


@pytest.mark.train
def test_scan_and_newest(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    """Newest by update; pretrained ranks lowest; invalid files and unsortable model_* names are listed."""
    make_ckpt(tmp_path / "pretrained_base.pt", ema_only=True)
    make_ckpt(tmp_path / "model_2.pt", 2)
    make_ckpt(tmp_path / "model_6.pt", 6)
    make_ckpt(tmp_path / LAST_NAME, 6)
    _truncate(make_ckpt(tmp_path / "model_8.pt", 8), 500)
    (tmp_path / "model_best.pt").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("ignored")
    scan = scan_dir(tmp_path)
    assert sorted(c.name for c in scan.valid) == sorted([LAST_NAME, "model_2.pt", "model_6.pt", "pretrained_base.pt"])
    assert sorted(scan.invalid) == ["model_8.pt", "model_best.pt"]
    newest = scan.newest()
    assert newest is not None
    assert (newest.name, newest.update) == (LAST_NAME, 6)


# ------------------------------------------------------------------------------------ prepare_resume
def test_prepare_resume_without_checkpoints(tmp_path: Path) -> None:
    assert prepare_resume(tmp_path / "missing").chosen is None
    plan = prepare_resume(tmp_path)
    assert plan.chosen is None
    assert plan.start_update == 0
    assert not plan.quarantined


@pytest.mark.train
def test_model_last_newest_is_left_alone(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    make_ckpt(tmp_path / "model_4.pt", 4)
    make_ckpt(tmp_path / LAST_NAME, 6)
    before = {n: file_sha256(tmp_path / n) for n in _names(tmp_path)}
    plan = prepare_resume(tmp_path)
    assert plan.chosen is not None
    assert (plan.chosen.name, plan.start_update) == (LAST_NAME, 6)
    assert plan.actions == []
    assert {n: file_sha256(tmp_path / n) for n in _names(tmp_path)} == before


@pytest.mark.train
@pytest.mark.parametrize("numbered_old_last_exists", [False, True])
def test_model_last_older_than_numbered(tmp_path: Path, make_ckpt: MakeCkpt, numbered_old_last_exists: bool) -> None:
    """model_last.pt (4) lags model_6.pt: model_last.pt becomes a copy of model_6.pt; the old one is kept."""
    make_ckpt(tmp_path / LAST_NAME, 4)
    old_last_sha = file_sha256(tmp_path / LAST_NAME)
    if numbered_old_last_exists:
        make_ckpt(tmp_path / "model_4.pt", 4)
    make_ckpt(tmp_path / "model_6.pt", 6)
    plan = prepare_resume(tmp_path)
    assert plan.chosen is not None
    assert (plan.chosen.name, plan.start_update) == (LAST_NAME, 6)
    assert file_sha256(tmp_path / LAST_NAME) == file_sha256(tmp_path / "model_6.pt")
    assert os.stat(tmp_path / LAST_NAME).st_ino != os.stat(tmp_path / "model_6.pt").st_ino  # a copy, not a link
    kept = [n for n in _names(tmp_path) if n != LAST_NAME and file_sha256(tmp_path / n) == old_last_sha]
    assert kept == (
        ["model_last.pt.superseded-" + kept[0].rsplit("-", 1)[-1]] if numbered_old_last_exists else ["model_4.pt"]
    )
    assert f5tts_pick(_names(tmp_path)) == LAST_NAME
    assert not any(".f5guard-tmp-" in n for n in _names(tmp_path))


@pytest.mark.train
def test_corrupt_model_last_falls_back_to_numbered(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    """A truncated model_last.pt is quarantined; F5-TTS then picks the highest model_N itself: no copy."""
    make_ckpt(tmp_path / "model_4.pt", 4)
    make_ckpt(tmp_path / "model_6.pt", 6)
    _truncate(make_ckpt(tmp_path / LAST_NAME, 8), 1000)
    plan = prepare_resume(tmp_path)
    assert [q.name for q in plan.quarantined] == [LAST_NAME]
    assert plan.chosen is not None
    assert (plan.chosen.name, plan.start_update) == ("model_6.pt", 6)
    assert f5tts_pick(_names(tmp_path)) == "model_6.pt"
    assert any(n.startswith("model_last.pt.corrupt-") for n in _names(tmp_path))


@pytest.mark.train
def test_missing_model_last_uses_highest_numbered(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    make_ckpt(tmp_path / "model_2.pt", 2)
    make_ckpt(tmp_path / "model_10.pt", 10)
    plan = prepare_resume(tmp_path)
    assert plan.chosen is not None
    assert (plan.chosen.name, plan.start_update) == ("model_10.pt", 10)
    assert LAST_NAME not in _names(tmp_path)


@pytest.mark.train
def test_corrupt_newest_numbered_is_skipped(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    """model_8.pt cut short while model_last.pt holds 6: quarantine model_8.pt, resume from 6."""
    make_ckpt(tmp_path / LAST_NAME, 6)
    _truncate(make_ckpt(tmp_path / "model_8.pt", 8), 2000)
    plan = prepare_resume(tmp_path)
    assert [q.name for q in plan.quarantined] == ["model_8.pt"]
    assert plan.chosen is not None
    assert plan.start_update == 6


@pytest.mark.train
def test_numbered_name_disagrees_with_content(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    """F5-TTS sorts by the digits in the name; a renamed file that holds less is not trusted over content."""
    make_ckpt(tmp_path / "model_9.pt", 3)  # a user renamed an old checkpoint
    make_ckpt(tmp_path / "model_5.pt", 5)
    plan = prepare_resume(tmp_path)
    assert plan.chosen is not None
    assert (plan.chosen.name, plan.start_update) == (LAST_NAME, 5)
    assert f5tts_pick(_names(tmp_path)) == LAST_NAME


@pytest.mark.train
def test_pretrained_only_and_pretrained_with_numbered(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    make_ckpt(tmp_path / "pretrained_base.pt", ema_only=True)
    plan = prepare_resume(tmp_path)
    assert plan.chosen is not None
    assert (plan.chosen.name, plan.start_update) == ("pretrained_base.pt", 0)
    make_ckpt(tmp_path / "model_2.pt", 2)
    plan = prepare_resume(tmp_path)
    assert plan.chosen is not None
    assert plan.chosen.name == "model_2.pt"


@pytest.mark.train
def test_unsortable_name_and_stale_temporaries(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    """model_best.pt would crash F5-TTS's int() sort: moved aside. Dead writers' temp copies go, live stay."""
    make_ckpt(tmp_path / "model_2.pt", 2)
    make_ckpt(tmp_path / "model_best.pt", 2)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (tmp_path / f".model_last.pt.f5guard-tmp-{dead}").write_bytes(b"partial")
    (tmp_path / f".model_last.pt.f5guard-tmp-{os.getppid()}").write_bytes(b"in flight")
    plan = prepare_resume(tmp_path)
    assert [q.name for q in plan.quarantined] == ["model_best.pt"]
    names = _names(tmp_path)
    assert f".model_last.pt.f5guard-tmp-{dead}" not in names
    assert f".model_last.pt.f5guard-tmp-{os.getppid()}" in names
    assert plan.chosen is not None
    assert plan.chosen.name == "model_2.pt"


@pytest.mark.train
def test_prepare_resume_is_idempotent(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    make_ckpt(tmp_path / LAST_NAME, 2)
    make_ckpt(tmp_path / "model_4.pt", 4)
    _truncate(make_ckpt(tmp_path / "model_6.pt", 6), 100)
    first = prepare_resume(tmp_path)
    assert first.actions
    second = prepare_resume(tmp_path)
    assert second.actions == []
    assert second.chosen is not None
    assert second.start_update == 4


@pytest.mark.train
def test_place_pretrained(tmp_path: Path, make_ckpt: MakeCkpt) -> None:
    """Validated, placed as pretrained_<name>, kept on a second call; an invalid source is refused."""
    source = make_ckpt(tmp_path / "src" / "F5TTS_v1_Base.pt", ema_only=True)
    info = place_pretrained(source, tmp_path / "ckpts")
    assert info.name == "pretrained_F5TTS_v1_Base.pt"
    assert info.kind == "pretrained"
    assert place_pretrained(source, tmp_path / "ckpts").name == info.name
    assert file_sha256(info.path) == file_sha256(source)
    bad = tmp_path / "src" / "broken.pt"
    bad.write_bytes(b"nope")
    with pytest.raises(CheckpointInvalid):
        place_pretrained(bad, tmp_path / "ckpts")


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = os.urandom(3 * 1024 * 1024 + 7)
    path.write_bytes(data)
    assert file_sha256(path, chunk=1024 * 1024) == hashlib.sha256(data).hexdigest()
