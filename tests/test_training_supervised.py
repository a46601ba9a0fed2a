"""The real F5-TTS Trainer (tiny model, CPU, offline) under the real daemon: crash and resume with identical
state, fallback past a truncated checkpoint, zero-loss graceful stop, restore on a fresh runtime, a full home."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Project, kill9, wait_dead

pytestmark = [pytest.mark.train, pytest.mark.slow]

UPDATES_PER_EPOCH = 4  # 8 clips, 2 per batch


def body(dataset: Path, *, epochs: int, throttle: float = 0.15, keep_numbered: int = -1, extra: str = "") -> str:
    return f"""
[[runs]]
name = "voice"
[[runs.stages]]
name = "train"
type = "train"
dataset = "{dataset}"
model = "tiny"
learning_rate = 1e-4
batch_size_per_gpu = 2
batch_size_type = "sample"
max_samples = 2
epochs = {epochs}
num_warmup_updates = 2
save_per_updates = 4
last_per_updates = 2
keep_last_n_checkpoints = {keep_numbered}
num_workers = 1
threads = 1
throttle_s = {throttle}
{extra}
env = {{ F5GUARD_TRAIN_VERIFY_RESUME = "1", TQDM_DISABLE = "1" }}
[runs.stages.restart]
backoff_initial_s = 0.2
"""


def events(p: Project) -> list[dict[str, Any]]:
    path = p.work / "runs" / "voice" / "train" / "progress.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip().startswith("{")]


def last_update(p: Project) -> int:
    ups = [e["update"] for e in events(p) if e["event"] in ("update", "checkpoint") and e.get("update")]
    return max(ups, default=0)


def training(p: Project) -> dict[str, Any]:
    return p.status()["runs"][0]["training"] or {}


def home_ckpts(p: Project) -> Path:
    return p.home / "runs" / "voice" / "checkpoints"


def trainer_pid(p: Project) -> int:
    return int(p.state()["runs"]["voice"]["stages"]["train"]["pid"])


def test_kill9_trainer_resumes_with_identical_state(make_project, tiny_dataset: Path) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(body(tiny_dataset, epochs=8))
    p.cli("start", check=True)
    p.wait_for(lambda: last_update(p) >= 9, timeout=120, what="update 9")
    pid = trainer_pid(p)
    kill9(pid)
    run = p.wait_run("voice", timeout=240)
    starts = [e for e in events(p) if e["event"] == "start"]
    assert len(starts) == 2
    checkpoints_before = [e["update"] for e in events(p) if e["event"] == "checkpoint" and e["pid"] == pid]
    assert starts[1]["start_update"] == max(checkpoints_before), "resumed from the newest checkpoint written"
    check = next(e for e in events(p) if e["event"] == "resume_check")
    assert check["update"] == starts[1]["start_update"]
    assert check["model_equal"] and check["ema_equal"] and check["optimizer_equal"] and check["scheduler_equal"]
    assert check["adam_step"] == starts[1]["start_update"]
    finished = [e for e in events(p) if e["event"] == "exit"][-1]
    assert finished["reason"] == "finished" and finished["update"] == 8 * UPDATES_PER_EPOCH
    stage = run["stages"][0]
    assert stage["state"] == "done" and stage["restarts"] == 1
    t = run["training"]
    assert t["update"] == 32 and t["total_updates"] == 32
    assert t["durable_update"] == 32 and t["durable_age_s"] is not None
    assert "killed by SIGKILL" in stage["last_failure"]

    # The loss curve, from the progress copies on home: also on a fresh VM with an empty work dir.
    p.cli("stop", check=True)
    fresh: Project = make_project(body(tiny_dataset, epochs=8), name="fresh", home=p.home)
    png = fresh.root / "curve.png"
    plotted = fresh.cli("plot", "--out", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert "up to update 32, 1 restart(s)" in plotted.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    missing = fresh.cli("plot", "nobody")
    assert (
        missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1 and "no run named" in missing.stderr
    )


def test_graceful_stop_loses_no_update_and_fresh_runtime_restores(make_project, tiny_dataset: Path) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(body(tiny_dataset, epochs=6, extra="export_every = 1000"))
    p.cli("start", check=True)
    p.wait_for(lambda: last_update(p) >= 7, timeout=120, what="update 7")
    p.cli("stop", check=True)
    stop = [e for e in events(p) if e["event"] == "exit"][-1]
    assert (stop["reason"], stop["detail"]) == ("stopped", "sigterm")
    stopped_at = stop["update"]
    export_dir = p.home / "runs" / "voice" / "export"
    assert not export_dir.exists(), "a stop exits 0 too, but it is not the end of training: no final copy"
    # The graceful stop's checkpoint is verified on home before the daemon exits.
    manifests = sorted(home_ckpts(p).glob("ckpt-*.json"))
    assert [json.loads(m.read_text())["update"] for m in manifests] == [stopped_at]

    # A new VM: empty work dir, same home; its dataset copy is still in place (the fixture).
    fresh: Project = make_project(body(tiny_dataset, epochs=6, extra="export_every = 1000"), name="fresh", home=p.home)
    before = fresh.status()
    assert before["daemon"]["running"] is False and before["runs"][0]["training"]["durable_update"] == stopped_at
    fresh.cli("start", check=True, env={"F5GUARD_BOOT_ID": "another-vm"})
    run = fresh.wait_run("voice", timeout=240)
    start = next(e for e in events(fresh) if e["event"] == "start")
    assert start["start_update"] == stopped_at, "0 updates lost across stop + a fresh runtime"
    check = next(e for e in events(fresh) if e["event"] == "resume_check")
    assert check["model_equal"] and check["ema_equal"] and check["optimizer_equal"]
    assert run["training"]["restored"]["update"] == stopped_at
    assert run["training"]["durable_update"] == 24
    kept = [p.name for p in home_ckpts(p).glob("ckpt-*.pt")]
    assert len(kept) == 1 and kept[0].startswith("ckpt-e0002-u000000024-"), f"keep_durable=1: {kept}"
    assert [f.name for f in export_dir.iterdir()] == ["ema-fp16-u000000024.pt"], "the end of training is copied"


def test_truncated_newest_checkpoint_is_quarantined(make_project, tiny_dataset: Path) -> None:  # type: ignore[no-untyped-def]
    p: Project = make_project(body(tiny_dataset, epochs=5))
    p.cli("start", check=True)
    p.wait_for(lambda: last_update(p) >= 9, timeout=120, what="update 9")
    p.cli("stop", check=True)
    ckpts = p.work / "runs" / "voice" / "ckpts"
    last = ckpts / "model_last.pt"
    stopped_at = [e for e in events(p) if e["event"] == "exit"][-1]["update"]
    (ckpts / f"model_{stopped_at}.pt").unlink(missing_ok=True)  # the newest valid one here is older than home's
    numbered = max(int(f.stem.split("_")[1]) for f in ckpts.glob("model_[0-9]*.pt"))
    assert numbered < stopped_at
    # The VM died while F5-TTS rewrote model_last.pt, and what it had synced never reached Drive: a torn file
    # here, no checkpoint on home, though home's state still records the durable update.
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    for f in home_ckpts(p).iterdir():
        f.unlink()
    p.cli("start", check=True)
    # Never backwards: it waits for that checkpoint to arrive rather than train from an older one...
    p.wait_for(
        lambda: "to arrive from Drive" in str((p.status()["runs"][0]["training"] or {}).get("waiting")),
        what="waiting for the durable checkpoint",
    )
    assert f"waiting for checkpoint u{stopped_at} to arrive from Drive" in p.cli("status").stdout
    p.cli("stop", check=True)
    # ...until the user accepts the older one.
    p.cli("start", "--accept-older", check=True)
    run = p.wait_run("voice", timeout=240)
    start = [e for e in events(p) if e["event"] == "start"][-1]
    assert start["start_update"] == numbered, "fell back to the newest valid checkpoint"
    quarantined = run["training"]["quarantined"]
    assert quarantined and quarantined[0]["name"] == "model_last.pt"
    assert (ckpts / quarantined[0]["moved_to"]).exists(), "kept, never deleted"
    assert "quarantined" in p.cli("status").stdout
    assert run["stages"][0]["restarts"] == 0, "one automatic fallback, no crash loop"


def test_kill9_daemon_leaves_home_consistent(make_project, tiny_dataset: Path) -> None:  # type: ignore[no-untyped-def]
    """Whenever the daemon dies, every final-named checkpoint on home is complete and has its manifest."""
    p: Project = make_project(body(tiny_dataset, epochs=6, throttle=0.05))
    p.cli("start", check=True)
    p.wait_for(lambda: last_update(p) >= 6, timeout=120, what="update 6")
    daemon = psutil.Process(p.daemon_pid() or 0)
    trainer = psutil.Process(trainer_pid(p))
    kill9(daemon.pid)
    assert not wait_dead([daemon, trainer], timeout=30), "the trainer stops with its daemon (PDEATHSIG)"
    from f5guard.checkpoints.inspect import inspect_checkpoint

    for final in home_ckpts(p).glob("ckpt-*.pt"):
        manifest = json.loads(final.with_suffix(".json").read_text())
        assert inspect_checkpoint(final).update == manifest["update"]
    p.cli("start", check=True)
    run = p.wait_run("voice", timeout=240)
    assert run["training"]["durable_update"] == 24
    assert not [f for f in home_ckpts(p).iterdir() if "tmp" in f.name], "temps cleaned, re-synced"


def test_trainer_outlives_a_killed_daemon_and_checkpoints(make_project, tiny_dataset: Path) -> None:  # type: ignore[no-untyped-def]
    """kill -9 of the daemon while the trainer computes without pauses and prints (tqdm on): the trainer gets
    its SIGTERM, finds no reader on its output pipe, and still saves at the next update and exits 0."""
    config = body(tiny_dataset, epochs=40, throttle=0.0).replace(', TQDM_DISABLE = "1"', ', TQDM_MININTERVAL = "0"')
    p: Project = make_project(config)
    p.cli("start", check=True)
    p.wait_for(lambda: last_update(p) >= 6, timeout=120, what="update 6")
    trainer = psutil.Process(trainer_pid(p))
    kill9(p.daemon_pid() or 0)
    assert not wait_dead([trainer], timeout=60), "the trainer stops with its daemon (PDEATHSIG)"
    exit_event = [e for e in events(p) if e["event"] == "exit"][-1]
    assert (exit_event["reason"], exit_event["detail"]) == ("stopped", "sigterm"), exit_event
    from f5guard.checkpoints.inspect import inspect_checkpoint

    saved = inspect_checkpoint(p.work / "runs" / "voice" / "ckpts" / "model_last.pt").update
    assert saved == exit_event["update"] == last_update(p), "0 updates lost"


def test_full_home_keeps_old_checkpoint_with_a_warning(make_project, tiny_dataset: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as a full Drive needs root")
    home = tmp_path / "smallhome"
    home.mkdir()
    # Room for one tiny checkpoint (~3 MB) plus the 8 MB safety margin, not for a second one beside it.
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=13824k", "tmpfs", str(home)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        p: Project = make_project(body(tiny_dataset, epochs=6), home=home)
        p.cli("start", check=True)
        p.wait_for(lambda: training(p).get("sync_warning"), timeout=150, what="a space warning")
        t = training(p)
        assert t["durable_update"] is not None, "the first checkpoint fit and stays"
        assert "free" in t["sync_warning"] and f"update {t['durable_update']}" in t["sync_warning"]
        assert "warning" in p.cli("status").stdout
        p.wait_run("voice", timeout=240)
        finals = list(home_ckpts(p).glob("ckpt-*.pt"))
        assert len(finals) == 1 and not [f for f in home_ckpts(p).iterdir() if "tmp" in f.name]
        p.cli("stop", check=True)
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def test_same_failure_twice_is_fatal(make_project, tiny_dataset: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A trainer that dies the same way at the same point twice (here: its pretrained file is gone) is FATAL
    with a diagnosis instead of a restart loop."""
    p: Project = make_project(body(tiny_dataset, epochs=2, extra=f'pretrained = "{tmp_path}/missing.pt"'))
    result = p.cli("start")
    assert result.returncode == 0
    run = p.wait_run("voice", ("fatal",), timeout=120)
    stage = run["stages"][0]
    assert "twice" in stage["reason"], stage["reason"]
    assert "missing.pt does not exist" in stage["reason"], stage["reason"]
    assert stage["restarts"] == 1


def test_inference_copy_every_n_updates_loads_with_f5_tts(make_project, tiny_dataset: Path) -> None:  # type: ignore[no-untyped-def]
    """export_every: an EMA-only fp16 copy of the newest durable checkpoint lands on home every N updates and at
    the end; only the newest is kept; F5-TTS's own inference loader takes it, equal to the EMA in fp16."""
    import warnings

    import torch

    with warnings.catch_warnings():  # pydub (imported by the inference utils) uses the deprecated audioop
        warnings.simplefilter("ignore", DeprecationWarning)
        from f5_tts.infer.utils_infer import load_checkpoint
    from f5_tts.model import CFM, DiT
    from f5_tts.model.utils import get_tokenizer

    from f5guard.trainer.presets import MEL_SPEC, dit_kwargs

    p: Project = make_project(body(tiny_dataset, epochs=3, extra="export_every = 4"))
    p.cli("start", check=True)
    run = p.wait_run("voice", timeout=240)
    export_dir = p.home / "runs" / "voice" / "export"
    assert sorted(f.name for f in export_dir.iterdir()) == ["ema-fp16-u000000012.pt"], "newest only, no temp"
    log = [json.loads(line) for line in (p.work / "logs" / "daemon.jsonl").read_text().splitlines()]
    done = [e["update"] for e in log if e.get("event") == "export.done"]
    assert len(done) >= 2 and done[-1] == 12 and done == sorted(done), done
    t = run["training"]
    assert t["export"]["update"] == 12 and t["export"]["error"] is None
    assert "inference copy on home (EMA, fp16): update 12" in p.cli("status").stdout

    copy = export_dir / "ema-fp16-u000000012.pt"
    durable = next(home_ckpts(p).glob("ckpt-e0001-u000000012-*.pt"))
    source = torch.load(durable, map_location="cpu", weights_only=True)
    assert copy.stat().st_size < durable.stat().st_size / 3
    vocab_map, vocab_size = get_tokenizer(str(tiny_dataset / "vocab.txt"), "custom")
    model = CFM(
        transformer=DiT(**dit_kwargs("tiny"), text_num_embeds=vocab_size, mel_dim=MEL_SPEC["n_mel_channels"]),
        mel_spec_kwargs=dict(MEL_SPEC),
        vocab_char_map=vocab_map,
    )
    loaded = load_checkpoint(model, str(copy), "cpu", dtype=torch.float16, use_ema=True)
    ema = {k.replace("ema_model.", ""): v for k, v in source["ema_model_state_dict"].items()}
    for name, tensor in loaded.state_dict().items():
        assert tensor.dtype == torch.float16 or not tensor.is_floating_point()
        if name in ema:
            assert torch.equal(tensor, ema[name].half()), name
