"""The ``train`` stage kind: F5-TTS training, long-running, supervised by the TrainDriver.

Two modes. ``builtin`` (default) runs ``python -m f5guard.trainer`` from a spec the daemon writes; every Trainer
knob is a key of the stage. ``command`` supervises the user's own F5-TTS command (``accelerate launch ...``),
whose checkpoint dir is given or resolved the way finetune_cli resolves it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from f5guard.errors import ConfigError
from f5guard.layout import HomeLayout, WorkLayout
from f5guard.machine import cuda_gpu_visible
from f5guard.schema import MAX_INT, MAX_SECONDS, Config, KindOptions, StageConfig, Table
from f5guard.stages.kinds import StageBase, command_argv
from f5guard.trainer.spec import SpecError, TrainSpec
from f5guard.trainer.stackdump import stage_env
from f5guard.trainevents import GATE_ENV

# TrainSpec fields a stage may set directly, with their TOML types.
_SPEC_PATHS = ("tokenizer_path", "pretrained")
_SPEC_SKIP = {"dataset_dir", "checkpoint_dir", "progress_path", "gate_path", *_SPEC_PATHS}
# Spec keys added after stages were fingerprinted: at their defaults they are left out of the identity, so an
# upgraded f5guard does not see every finished training as changed (and rerun it and what follows it).
_LATER_DEFAULTS: dict[str, object] = {
    "mixed_precision": "auto", "bnb_optimizer": False, "num_processes": 1, "nan_patience": 3, "gate_path": None,
}  # fmt: skip
DEFAULT_HANG_MINUTES = 30.0
MAX_KEEP_DURABLE = 100  # each is a full checkpoint on Drive (~5 GB for Base)
DEFAULT_SAMPLE_TEXT = "This is my voice, learning to speak a little better with every update."


@dataclass(frozen=True)
class TrainOptions(KindOptions):
    """What the TrainDriver reads of a train stage: mode, sync and export settings, and where things live."""

    mode: Literal["builtin", "command"]
    keep_durable: int  # durable checkpoints kept on home (>= 1)
    hang_minutes: float  # no progress for this long -> stacks dumped, trainer restarted (0: off)
    sync_polling: bool  # poll the checkpoint dir instead of inotify (FUSE, network disks)
    export_every: int  # updates between inference copies (0: off)
    checkpoint_dir: str  # where the trainer saves (work)
    spec_path: str  # builtin mode: the TrainSpec the daemon writes before each attempt
    progress_path: str  # builtin mode: the trainer's JSON-lines progress
    home_checkpoints: str  # durable copies on home
    export_dir: str
    export_log: str
    spec: TrainSpec | None = None  # builtin mode only
    sample_every: int = 0  # updates between audio samples (0: off; builtin mode only)
    sample_text: str = DEFAULT_SAMPLE_TEXT  # what every sample says
    vocoder: str = ""  # a local vocos dir; "": F5-TTS's download of charactr/vocos-mel-24khz
    sample_dir: str = ""  # {home}/runs/<run>/samples
    sample_log: str = ""
    progress_home: str = ""  # {home}/runs/<run>/progress: the progress copies (`f5guard plot` on a fresh VM)
    gate_path: str = ""  # the trainer's start gate (trainevents.Gate): a file that exists once it may train
    gated: bool = False  # launched while the lease settles, held at the gate (builtin always; command: opt-in)

    def fingerprint(self) -> Mapping[str, object]:
        skip = ("spec", "progress_home", "gate_path")  # where home keeps copies is not what training depends on
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        if not self.gated or self.mode == "builtin":
            del data["gated"]  # added later: an upgraded f5guard must not see an old stage as changed
        if self.spec is not None:
            data["spec"] = self.spec.to_dict()
        return data

    def home_copies(self) -> tuple[tuple[str, str], ...]:
        return ((self.progress_path, self.progress_home),) if self.mode == "builtin" and self.progress_home else ()


def _spec_fields() -> dict[str, type]:
    types: dict[str, type] = {}
    for f in dataclasses.fields(TrainSpec):
        if f.name in _SPEC_SKIP:
            continue
        default = f.default
        types[f.name] = (
            bool if isinstance(default, bool) else float if isinstance(default, float)
            else int if isinstance(default, int) else str
        )  # fmt: skip
    return types


def _export_every(table: Table) -> int:
    every = table.integer("export_every", 0, minimum=-MAX_INT)
    if every < 0:
        table.fail(f"must be 0 (off) or a number of updates, got {every}", "export_every")
    return every


def _sample_options(table: Table, base: StageBase, home: HomeLayout, run: str, stage_dir: Path) -> dict[str, Any]:
    """sample_every / sample_text / vocoder: audio samples while training (training/sampler.py)."""
    every = table.integer("sample_every", 0, minimum=-MAX_INT)
    if every < 0:
        table.fail(f"must be 0 (off) or a number of updates, got {every}", "sample_every")
    text = table.get("sample_text", str, DEFAULT_SAMPLE_TEXT)
    if not text.strip():
        table.fail("must be a sentence to speak (or leave it out for the default)", "sample_text")
    vocoder = table.get("vocoder", str, "")
    if vocoder:
        vocoder = base.resolve(vocoder, table.key_path("vocoder"), table.file)
        base.require(vocoder, table, "vocoder", "the local vocos vocoder (config.yaml + pytorch_model.bin)",
                     folder=True)  # fmt: skip
    return {
        "sample_every": every,
        "sample_text": text.strip(),
        "vocoder": vocoder,
        "sample_dir": str(home.samples_dir(run)),
        "sample_log": str(stage_dir / "sample.log"),
    }


def build_train(table: Table, base: StageBase) -> StageConfig:
    mode = table.get("mode", str, "builtin")
    if mode not in ("builtin", "command"):
        table.fail(f"must be 'builtin' or 'command', got {mode!r}", "mode")
    keep = table.integer("keep_durable", 1, minimum=-MAX_INT, maximum=MAX_KEEP_DURABLE)
    if keep < 1:
        table.fail(f"must be at least 1 (home always keeps the last good checkpoint), got {keep}", "keep_durable")
    run, work, home = base.values["run"], WorkLayout(Path(base.values["work"])), HomeLayout(Path(base.values["home"]))
    stage_dir = work.stage_dir(run, base.name)
    ckpt_text = table.get("checkpoint_dir", str, "")
    options = TrainOptions(
        mode="command" if mode == "command" else "builtin",
        keep_durable=keep,
        hang_minutes=table.number("hang_minutes", DEFAULT_HANG_MINUTES, maximum=MAX_SECONDS / 60),
        sync_polling=table.get("sync_polling", bool, False),
        export_every=_export_every(table),
        checkpoint_dir=(
            base.resolve(ckpt_text, table.key_path("checkpoint_dir"), table.file)
            if ckpt_text
            else str(work.checkpoints(run))
        ),
        spec_path=str(stage_dir / "spec.json"),
        progress_path=str(stage_dir / "progress.jsonl"),
        home_checkpoints=str(home.checkpoints(run)),
        export_dir=str(home.export_dir(run)),
        export_log=str(stage_dir / "export.log"),
        progress_home=str(home.progress_dir(run)),
        gate_path=str(stage_dir / "gate-open"),
        gated=mode == "builtin" or table.get("gated", bool, False),
        **_sample_options(table, base, home, run, stage_dir),
    )
    env = {**base.env, "PYTHONFAULTHANDLER": "1", **stage_env(stage_dir)}  # stacks per process on a hang
    if mode == "command":
        if options.gated:  # the command promises to wait until this file exists before it trains or saves
            env[GATE_ENV] = options.gate_path
        if options.sample_every:
            table.fail("is only for mode = 'builtin' (samples need the run's preset, vocab and dataset)",
                       "sample_every")  # fmt: skip
        command = command_argv(table, base)
        if not ckpt_text:
            ckpts = _finetune_cli_ckpts(table, command, base.values["python"])
            options = dataclasses.replace(options, checkpoint_dir=ckpts)
        return base.finish("train", command, long_running=True, options=options, env=env, python=base.python)
    for key in ("command", "gated"):
        if table.has(key):
            table.fail("is only for mode = 'command'; the builtin mode runs `python -m f5guard.trainer`", key)
    spec = _spec(table, base, options.checkpoint_dir, options.progress_path)
    options = dataclasses.replace(options, spec=spec)
    inputs = [*base.inputs, str(spec.dataset_dir / "raw.arrow"), str(spec.dataset_dir / "duration.json")]
    inputs.append(str(spec.vocab_path))
    if spec.pretrained is not None:
        inputs.append(str(spec.pretrained))
    command = [base.values["python"], "-m", "f5guard.trainer", "--spec", options.spec_path]  # the stack python
    # The training depends on the spec's knobs and data, not on where work keeps its checkpoints and files.
    spec_json = spec.to_dict()
    identity = {
        "mode": mode,
        "spec": {
            k: v
            for k, v in spec_json.items()
            if k not in ("checkpoint_dir", "progress_path") and not (k in _LATER_DEFAULTS and _LATER_DEFAULTS[k] == v)
        },
    }
    return base.finish(
        "train",
        command,
        long_running=True,
        options=options,
        identity=identity,
        inputs=tuple(dict.fromkeys(inputs)),
        env=env,
        python=base.python,  # the exporter, and the trainer itself, run f5guard code in the stack python
        self_tied=True,  # f5guard.trainer sets its own parent-death signal: restarts skip a full fork
    )


def _spec(table: Table, base: StageBase, checkpoint_dir: str, progress_path: str) -> TrainSpec:
    values: dict[str, Any] = {}
    for name, kind in _spec_fields().items():
        if table.has(name):
            if name == "threads":
                values[name] = table.get(name, int)
            elif name == "batch_size_per_gpu" and isinstance(table.get(name, object), str):
                values[name] = table.get(name, str)  # "auto"; TrainSpec names any other text
            elif name == "num_processes":  # an integer or "auto": TrainSpec says what is wrong with it
                values[name] = table.get(name, object)
            else:
                values[name] = table.get(name, kind)
    dataset = table.text("dataset")
    values["dataset_dir"] = base.resolve(dataset, table.key_path("dataset"), table.file)
    for name in _SPEC_PATHS:
        text = table.get(name, str, "")
        if text:
            values[name] = base.resolve(text, table.key_path(name), table.file)
    try:
        spec = TrainSpec(checkpoint_dir=Path(checkpoint_dir), progress_path=Path(progress_path), **values)
    except SpecError as err:
        detail = getattr(err, "detail", err.message)  # "<field> must be ..., got ..."
        field, _, rest = detail.partition(" ")
        if table.has(field):
            table.fail(rest, field)
        table.fail(detail)
    return spec


def check_gpu_keys(config: Config) -> None:
    """fp16 and 8-bit Adam need CUDA: `f5guard start` says so at once (torch-free), not a trainer minutes later.
    Not part of reading the config: `status` must still work on a VM that came back without a GPU."""
    for i, run in enumerate(config.runs):
        for j, stage in enumerate(run.stages):
            spec = stage.options.spec if isinstance(stage.options, TrainOptions) else None
            if spec is None or not (spec.mixed_precision == "fp16" or spec.bnb_optimizer) or cuda_gpu_visible():
                continue
            key, message = (
                ("mixed_precision", "'fp16' needs a CUDA GPU and none is visible here: use 'auto', 'bf16' or 'no'")
                if spec.mixed_precision == "fp16"
                else ("bnb_optimizer", "true needs a CUDA GPU (bitsandbytes' 8-bit Adam) and none is visible here")
            )
            raise ConfigError(f"{config.path}: runs[{i}].stages[{j}].{key}: {message}")


def _finetune_cli_ckpts(table: Table, command: list[str], python: str) -> str:
    """finetune_cli saves to files("f5_tts")/../../ckpts/<dataset_name>: found where the stack python finds
    f5_tts, without importing it."""
    from f5guard.stages.stackpython import f5_tts_dir  # only this rare path needs it; keep `status` imports lean

    dataset = None
    for flag, value in itertools.pairwise(command):
        if flag == "--dataset_name":
            dataset = value
    package = f5_tts_dir(python) if dataset is not None else None
    if dataset is None or package is None:
        table.fail(
            "is required for mode = 'command' unless the command is finetune_cli with --dataset_name "
            "and f5_tts is installed in the stack python (python = ...)",
            "checkpoint_dir",
        )
    return str((package / ".." / ".." / "ckpts" / str(dataset)).resolve())
