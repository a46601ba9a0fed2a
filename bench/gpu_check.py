"""One-command GPU check: F5TTS_v1_Base (random init) trained bare and under f5guard, side by side.

Three sides, each a fresh process on the same synthetic dataset (tone clips through F5-TTS's own
prepare_csv_wavs, with its vocab), measuring updates/s (over the updates after the warm-up) and peak memory
(torch.cuda.max_memory_allocated on a GPU; the process's max RSS on a CPU):

1. ``bare``: the F5-TTS Trainer in fp32 (a plain Python process);
2. ``accelerate``: the same script through ``accelerate launch --mixed_precision fp16`` (bf16 on a CPU,
   where the Trainer gets ``accelerate_kwargs={"mixed_precision": "bf16"}`` instead: no launcher needed);
3. ``f5guard``: the builtin trainer under a real daemon (``f5guard start`` with a config) with
   ``mixed_precision = "auto"``; the resolved precision comes from the trainer's start event. A config that
   refuses the key (a branch without it) is reported as skipped, with f5guard's message.

Then one ``kill -9`` of the trainer under f5guard after its first checkpoint: the daemon restarts it, and the
resumed run's ``resume_check`` event (F5GUARD_TRAIN_VERIFY_RESUME=1, trainer/verify.py) says whether model,
EMA, optimizer and scheduler came back exactly. Prints a markdown table and writes bench/out/gpu_check.json.

On a CPU (``--cpu``, or automatically without CUDA) the model is the tiny preset and the updates are few:
it checks the script end to end. Offline: no download (random init, local tone clips).

On the device machine (one command, < 8 min on an H200; it needs f5_tts, accelerate and f5guard's own deps
importable by that python, and this checkout on PYTHONPATH):
    PYTHONPATH=. python bench/gpu_check.py
Here: PYTHONPATH=. .venv/bin/python bench/gpu_check.py --cpu
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
PY = sys.executable

# Per device: model preset, clips, batch (samples), updates for the bare sides, first update counted.
PLANS: dict[str, dict[str, Any]] = {
    "cuda": {"model": "base", "clips": 64, "batch": 16, "updates": 40, "warmup": 10, "checkpoint_at": 40},
    "cpu": {"model": "tiny", "clips": 8, "batch": 2, "updates": 120, "warmup": 20, "checkpoint_at": 120},
}
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("F5GUARD_")}
BASE_ENV.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled", TQDM_DISABLE="1",
                PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))  # fmt: skip

# Loaded into the trainer under f5guard (sitecustomize via PYTHONPATH): writes its peak memory every 0.5 s,
# since that process ends with os._exit and is not ours to instrument otherwise.
_PEAK_PROBE = """
import os, sys, threading, time, json, resource
def _probe(path):
    while True:
        time.sleep(0.5)
        torch = sys.modules.get("torch")
        cuda = None
        try:  # torch may be half-imported yet (the main thread is importing it)
            if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
                cuda = torch.cuda.max_memory_allocated()
        except Exception:
            continue
        doc = {"pid": os.getpid(), "cuda_max_allocated": cuda,
               "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        with open(path + ".tmp", "w") as handle:
            json.dump(doc, handle)
        os.replace(path + ".tmp", path)
if os.environ.get("GPU_CHECK_PEAK") and "f5guard.trainer" in " ".join(sys.orig_argv):
    threading.Thread(target=_probe, args=(os.environ["GPU_CHECK_PEAK"] + f".{os.getpid()}",), daemon=True).start()
"""


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# ------------------------------------------------------------------------------------------------ worker
class _Enough(Exception):
    """Raised from the log hook once the worker has trained its updates (no final 5 GB save)."""


def worker(args: argparse.Namespace) -> int:
    """One bare side, in its own process: build, train ``--updates`` updates, write the figures as JSON."""
    import resource

    import torch
    from f5_tts.model import CFM, DiT, Trainer
    from f5_tts.model.utils import get_tokenizer

    from f5guard.trainer.build import build_dataset
    from f5guard.trainer.presets import MEL_SPEC, dit_kwargs
    from f5guard.trainer.spec import TrainSpec

    torch.manual_seed(0)
    if args.cpu:
        torch.set_num_threads(1)  # as the f5guard side's `threads = 1`: a shared CPU thrashes with more
    spec = TrainSpec(dataset_dir=args.dataset, checkpoint_dir=args.ckpts, progress_path=args.ckpts / "unused.jsonl",
                     model=args.model)  # fmt: skip
    vocab, vocab_size = get_tokenizer(str(spec.vocab_path), "custom")
    model = CFM(transformer=DiT(**dit_kwargs(args.model), text_num_embeds=vocab_size,
                                mel_dim=MEL_SPEC["n_mel_channels"]),
                mel_spec_kwargs=dict(MEL_SPEC), vocab_char_map=vocab)  # fmt: skip
    kwargs = {"mixed_precision": args.precision} if args.precision else {}
    if args.cpu:
        kwargs["cpu"] = True
    trainer = Trainer(model, epochs=1000, learning_rate=1e-4, num_warmup_updates=2, save_per_updates=10**9,
                      keep_last_n_checkpoints=0, checkpoint_path=str(args.ckpts), batch_size_per_gpu=args.batch,
                      batch_size_type="sample", max_samples=args.batch, logger=None, log_samples=False,
                      last_per_updates=10**9, mel_spec_type=MEL_SPEC["mel_spec_type"],
                      accelerate_kwargs=kwargs)  # fmt: skip
    times: list[tuple[int, float]] = []
    real_log = trainer.accelerator.log

    def counting_log(values: dict[str, Any], step: int | None = None, *a: Any, **kw: Any) -> None:
        times.append((int(step or 0), time.perf_counter()))
        if step is not None and step >= args.updates:
            raise _Enough
        real_log(values, step, *a, **kw)

    trainer.accelerator.log = counting_log
    with contextlib.suppress(_Enough):
        trainer.train(build_dataset(spec), num_workers=1, resumable_with_seed=666)
    counted = [(u, t) for u, t in times if u >= args.warmup]
    rate = (counted[-1][0] - counted[0][0]) / (counted[-1][1] - counted[0][1]) if len(counted) >= 2 else None
    cuda = torch.cuda.max_memory_allocated() if torch.cuda.is_available() and not args.cpu else None
    result = {"updates_per_s": rate, "updates": times[-1][0] if times else 0,
              "precision": str(trainer.accelerator.mixed_precision), "device": str(trainer.accelerator.device),
              "cuda_max_allocated": cuda,
              "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
    args.result.write_text(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # skip torch's teardown and the persistent DataLoader workers' join


# ------------------------------------------------------------------------------------------------ sides
def dataset(plan: dict[str, Any]) -> Path:
    root = OUT / "gpu_check" / f"data-{plan['clips']}"
    data = root / "data"
    if not all((data / n).is_file() for n in ("raw.arrow", "duration.json", "vocab.txt")):
        log(f"building a synthetic dataset of {plan['clips']} tone clips in {root}")
        subprocess.run([PY, "-m", "f5guard.trainer.tinydata", str(root), "--n", str(plan["clips"]),
                        "--source", "tones"], check=True, env=BASE_ENV, capture_output=True, timeout=600)  # fmt: skip
    return data


def bare_side(name: str, tmp: Path, data: Path, plan: dict[str, Any], cpu: bool, precision: str,
              launcher: list[str] | None) -> dict[str, Any]:  # fmt: skip
    result = tmp / f"{name}.json"
    argv = [str(Path(__file__).resolve()), "--worker", "--dataset", str(data), "--ckpts", str(tmp / name),
            "--model", plan["model"], "--batch", str(plan["batch"]), "--updates", str(plan["updates"]),
            "--warmup", str(plan["warmup"]), "--result", str(result)]  # fmt: skip
    if cpu:
        argv.append("--cpu")
    if launcher is None:  # precision through the Trainer's accelerate_kwargs
        argv += ["--precision", precision] if precision != "no" else []
        command = [PY, *argv]
    else:
        command = [*launcher, *argv]
    log(f"{name}: {' '.join(command[:8])} ...")
    t0 = time.monotonic()
    done = subprocess.run(command, env=BASE_ENV, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0 or not result.is_file():
        tail = (done.stdout + done.stderr).strip().splitlines()[-6:]
        return {"side": name, "error": f"exit {done.returncode}: " + " | ".join(tail)}
    figures: dict[str, Any] = json.loads(result.read_text())
    return {"side": name, "wall_s": round(time.monotonic() - t0, 1), **figures}


def toml(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def f5guard_config(root: Path, data: Path, plan: dict[str, Any], cpu: bool, precision: str | None) -> Path:
    (root / "home").mkdir(parents=True, exist_ok=True)
    env = {"TQDM_DISABLE": "1", "F5GUARD_TRAIN_VERIFY_RESUME": "1", "GPU_CHECK_PEAK": str(root / "peak"),
           "PYTHONPATH": os.pathsep.join((str(root / "probe"), str(ROOT)))}  # fmt: skip
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    knobs = ["threads = 1"] if cpu else []
    lines = [f"home = {toml(str(root / 'home'))}", f"work = {toml(str(root / 'work'))}", "[lease]", "settle_s = 0",
             "[[runs]]", 'name = "gpu"', "[[runs.stages]]", 'name = "train"', 'type = "train"',
             f"dataset = {toml(str(data))}", "epochs = 1000", f"model = {toml(plan['model'])}",
             "learning_rate = 1e-4", "num_warmup_updates = 2", f"batch_size_per_gpu = {plan['batch']}",
             'batch_size_type = "sample"', f"max_samples = {plan['batch']}", "save_per_updates = 1000000",
             f"last_per_updates = {plan['checkpoint_at']}", "keep_last_n_checkpoints = 0", "num_workers = 1",
             "save_every_minutes = 0", *knobs]  # fmt: skip
    if precision is not None:
        lines.append(f"mixed_precision = {toml(precision)}")
    lines.append("env = { " + ", ".join(f"{k} = {toml(v)}" for k, v in env.items()) + " }")
    lines += ["[runs.stages.restart]", "budget = 5", "backoff_initial_s = 0.0"]
    (root / "probe").mkdir(exist_ok=True)
    (root / "probe" / "sitecustomize.py").write_text(_PEAK_PROBE)
    config = root / "f5guard.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def f5guard(root: Path, config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = str(Path(PY).parent / "f5guard")
    command = [exe] if Path(exe).exists() else [PY, "-m", "f5guard"]
    return subprocess.run([*command, *args, "--config", str(config)], env=BASE_ENV, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def events(root: Path) -> list[dict[str, Any]]:
    path = root / "work" / "runs" / "gpu" / "train" / "progress.jsonl"
    found = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    return found


def wait_event(root: Path, pred: Any, timeout: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ev in events(root):
            if pred(ev):
                return ev
        time.sleep(0.2)
    tail = [e.get("event") for e in events(root)[-5:]]
    raise TimeoutError(f"no {what} within {timeout:g} s (last events: {tail})")


def f5guard_side(tmp: Path, data: Path, plan: dict[str, Any], cpu: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Speed and peak under the daemon with mixed_precision = "auto"; then kill -9 and the resume check."""
    root = tmp / "f5guard"
    config = f5guard_config(root, data, plan, cpu, "auto")
    side: dict[str, Any] = {"side": "f5guard (auto)"}
    started = f5guard(root, config, "start")
    if started.returncode != 0:
        message = (started.stdout + started.stderr).strip().splitlines()
        side["skipped"] = "config refused: " + (message[-1] if message else f"exit {started.returncode}")
        side["side"] = "f5guard (key refused: default precision)"
        log(f"f5guard (auto): {side['skipped']}; measured and killed without the key")
        root = tmp / "f5guard-plain"
        config = f5guard_config(root, data, plan, cpu, None)
        started = f5guard(root, config, "start")
        if started.returncode != 0:
            return side, {"error": f"f5guard start failed: {(started.stdout + started.stderr).strip()[-300:]}"}
    kill: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        start = wait_event(root, lambda e: e.get("event") == "start", 600, "start event")
        log(f"f5guard: trainer {start['pid']} started ({time.monotonic() - t0:.0f} s after f5guard start)")
        at = plan["checkpoint_at"]
        ckpt = wait_event(root, lambda e: e.get("event") == "checkpoint" and e.get("update") == at, 900,
                          f"checkpoint at update {at}")  # fmt: skip
        # measured either way: without the key, at f5guard's default precision
        ups = [e for e in events(root) if e.get("event") == "update" and e.get("pid") == start["pid"]
               and plan["warmup"] <= e["update"] < at]  # fmt: skip
        rate = (ups[-1]["update"] - ups[0]["update"]) / (ups[-1]["t"] - ups[0]["t"]) if len(ups) >= 2 else None
        peak = _peak(root, start["pid"])
        side.update(updates_per_s=rate, updates=at, cuda_max_allocated=peak.get("cuda_max_allocated"),
                    max_rss_mb=peak.get("max_rss_mb"),
                    precision=(start.get("setup") or {}).get("precision", "(not in start event)"),
                    device=(start.get("setup") or {}).get("device", "cpu" if cpu else "cuda"))  # fmt: skip
        victim = int(ckpt["pid"])
        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()
        log(f"f5guard: kill -9 {victim} after its checkpoint at update {at}")
        new_start = wait_event(root, lambda e: e.get("event") == "start" and e.get("pid") != victim, 600,
                               "the restarted trainer's start")  # fmt: skip
        check = wait_event(root, lambda e: e.get("event") == "resume_check" and e.get("pid") == new_start["pid"],
                           300, "resume_check")  # fmt: skip
        kill = {"killed_pid": victim, "new_pid": new_start["pid"], "resumed_at": new_start.get("start_update"),
                "kill_to_start_event_s": round(new_start["t"] - killed_at, 1),
                **{k: check.get(k) for k in ("update", "model_equal", "ema_equal", "optimizer_equal",
                                             "scheduler_equal", "adam_step")}}  # fmt: skip
        kill["ok"] = bool(
            kill["resumed_at"] == at
            and all(kill[k] for k in ("model_equal", "ema_equal", "optimizer_equal", "scheduler_equal"))
        )
    except (TimeoutError, OSError, KeyError) as err:
        kill = {"error": str(err)}
    finally:
        stopped = f5guard(root, config, "stop", timeout=600)
        if stopped.returncode != 0:
            kill.setdefault("stop", (stopped.stdout + stopped.stderr).strip()[-300:])
    return side, kill


def _peak(root: Path, pid: int) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        doc: dict[str, Any] = json.loads((root / f"peak.{pid}").read_text())
        return doc
    return {}


# ------------------------------------------------------------------------------------------------ report
def table(rows: list[dict[str, Any]], cuda: bool) -> str:
    unit = "peak GPU memory (GiB)" if cuda else "peak RSS (MiB)"
    lines = [f"| side | precision | updates/s | {unit} | note |", "|---|---|---|---|---|"]
    base = next((r.get("updates_per_s") for r in rows if r["side"] == "bare" and r.get("updates_per_s")), None)
    for r in rows:
        rate = r.get("updates_per_s")
        peak = (r.get("cuda_max_allocated") or 0) / 2**30 if cuda else r.get("max_rss_mb")
        ratio = f"{rate / base:.2f}x bare" if rate and base else ""
        note = r.get("error") or "; ".join(n for n in (ratio, r.get("skipped", "")) if n)
        lines.append(f"| {r['side']} | {r.get('precision', '')} | {f'{rate:.2f}' if rate else '-'} | "
                     f"{f'{peak:.2f}' if peak else '-'} | {note} |")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny model on the CPU (automatic without CUDA)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dirs")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name, kind in (("dataset", Path), ("ckpts", Path), ("result", Path), ("model", str), ("precision", str),
                       ("batch", int), ("updates", int), ("warmup", int)):  # fmt: skip
        parser.add_argument(f"--{name}", type=kind, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    try:
        import accelerate  # noqa: F401
        import f5_tts  # noqa: F401
        import torch
    except ImportError as err:
        print(f"bench/gpu_check.py: {err.name} is not importable by {PY}: install it there first", file=sys.stderr)
        return 2
    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    plan = PLANS["cuda" if cuda else "cpu"]
    if not cuda:
        BASE_ENV["CUDA_VISIBLE_DEVICES"] = ""
    t0 = time.monotonic()
    data = dataset(plan)
    tmp = Path(tempfile.mkdtemp(prefix="f5guard-gpu-check-"))
    launch = [PY, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
              "--dynamo_backend", "no", "--mixed_precision", "fp16"]  # fmt: skip
    rows = [
        bare_side("bare", tmp, data, plan, not cuda, "no", None),
        bare_side("accelerate", tmp, data, plan, not cuda, "fp16" if cuda else "bf16", launch if cuda else None),
    ]
    side, kill = f5guard_side(tmp, data, plan, not cuda)
    rows.append(side)
    result = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
              "plan": plan, "sides": rows, "kill_9_resume": kill, "wall_s": round(time.monotonic() - t0, 1),
              "loadavg": os.getloadavg()}  # fmt: skip
    if args.keep:
        result["tmp"] = str(tmp)
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    OUT.mkdir(exist_ok=True)
    out = OUT / ("gpu_check.json" if cuda else "gpu_check_cpu.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['device']}, torch {result['torch']}, model {plan['model']}, batch {plan['batch']} samples, "
          f"updates/s over updates {plan['warmup']}+\n")  # fmt: skip
    print(table(rows, cuda))
    print(f"\nkill -9 + resume under f5guard: {json.dumps(kill)}")
    print(f"wall {result['wall_s']} s; {out}")
    return 0 if kill.get("ok") and not any("error" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
