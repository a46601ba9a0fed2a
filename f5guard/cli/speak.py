"""``f5guard speak RUN "text" [--ref CLIP] [--ref-text TEXT] [--out FILE]``: say something in the voice being
trained, with the newest checkpoint on home (or its inference copy, when that is as new).

The CLI never imports torch: the synthesis is ``python -m f5guard.trainer.sample`` in a subprocess (GPU when
there is one), with the run's preset, vocab and configured vocoder, and a reference clip from the run's own
dataset unless ``--ref`` names one. Works while training runs and on a fresh VM (everything is read from home).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from f5guard.checkpoints.durable import list_durable
from f5guard.cli.common import config_option, open_config
from f5guard.errors import F5guardError, UsageError
from f5guard.layout import HomeLayout
from f5guard.schema import Config, StackPython, StageConfig
from f5guard.stages.stackpython import ensure_pythonpath, stack_env
from f5guard.training.exporter import newest_export
from f5guard.training.kind import TrainOptions


@dataclass(frozen=True)
class Source:
    """The checkpoint to speak with."""

    path: Path
    update: int
    what: str  # "checkpoint" or "inference copy"


@click.command("speak")
@config_option
@click.argument("run")
@click.argument("text")
@click.option("--ref", type=click.Path(dir_okay=False), default=None, help="Reference clip (default: the run's).")
@click.option("--ref-text", default=None, help="The reference clip's transcript (needed unless it is in the dataset).")
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False), default=None, help="WAV to write.")
def command(
    config_path: str | None, run: str, text: str, ref: str | None, ref_text: str | None, out: str | None
) -> int:
    """Synthesize TEXT in RUN's voice with its newest checkpoint; prints where the WAV is."""
    ctx = open_config(config_path)
    stage = train_stage(ctx.config, run)
    options = stage.options
    assert isinstance(options, TrainOptions)
    if not text.strip():
        raise UsageError('the text to speak is empty: f5guard speak RUN "what to say"')
    if ref is not None and not Path(ref).is_file():
        raise UsageError(f"--ref {ref}: no such file")
    if ref_text is not None and ref is None:
        raise UsageError("--ref-text describes a --ref clip: give both, or neither (a clip of the run's dataset)")
    source = newest_source(ctx.home, run, options)
    path = Path(out) if out else ctx.home.speak_dir(run) / f"{time.strftime('%Y%m%dT%H%M%S')}.wav"
    note = speak(source, path, options, text, ref=Path(ref) if ref else None, ref_text=ref_text, python=stage.python)
    took = f"{note.get('audio_s', '?')} s of audio in {note.get('seconds', '?')} s on {note.get('device', '?')}"
    click.echo(f"wrote {path} (update {source.update}, {source.what}; {took})")
    return 0


def train_stage(config: Config, name: str) -> StageConfig:
    """The builtin train stage of run ``name``: its preset, vocab, dataset, vocoder and stack python."""
    run = config.run(name)
    trained = [r.name for r in config.runs if any(isinstance(s.options, TrainOptions) for s in r.stages)]
    names = ", ".join(trained) or "none"
    if run is None:
        raise UsageError(f"no run named {name!r} in {config.path} (runs with a train stage: {names})")
    for stage in run.stages:
        if isinstance(stage.options, TrainOptions):
            if stage.options.spec is None:
                raise UsageError(f"run {name!r} trains with mode = 'command': speak needs the builtin trainer's "
                                 "preset, vocab and dataset")  # fmt: skip
            return stage
    raise UsageError(f"run {name!r} has no train stage (runs with one: {names})")


def newest_source(home: HomeLayout, run: str, options: TrainOptions) -> Source:
    """The newest durable checkpoint on home, or the inference copy when it is as new (1/7 of the reading)."""
    durable = list_durable(home.checkpoints(run))
    exported = newest_export(Path(options.export_dir))
    best: Source | None = Source(durable[-1].path, durable[-1].update, "checkpoint") if durable else None
    if exported is not None and (best is None or exported.update >= best.update):
        best = Source(exported.path, exported.update, "inference copy")
    if best is None:
        raise F5guardError(f"run {run!r} has no checkpoint on home yet ({home.checkpoints(run)}): train first")
    return best


def speak(
    source: Source,
    out: Path,
    options: TrainOptions,
    text: str,
    *,
    ref: Path | None = None,
    ref_text: str | None = None,
    python: StackPython | None = None,
) -> dict[str, object]:
    """Run the synthesis process in the stack python (None: this one); returns its note (the .json beside
    ``out``). One line on failure."""
    spec = options.spec
    assert spec is not None, "train_stage() returns builtin stages only"
    env = dict(os.environ)
    if python is not None and python.pythonpath is not None:
        ensure_pythonpath(python.pythonpath)
        env = stack_env(env, python)
    interpreter = python.path if python is not None else sys.executable
    argv = [
        interpreter, "-m", "f5guard.trainer.sample", str(source.path), str(out), "--model", spec.model,
        "--vocab", str(spec.vocab_path), "--dataset", str(spec.dataset_dir), "--text-stdin",
        f"--vocoder={options.vocoder}",
    ]  # fmt: skip
    if ref is not None:
        argv.append(f"--ref={ref}")
    if ref_text is not None:
        argv.append(f"--ref-text={ref_text}")
    try:  # the text goes on stdin: on the command line a long one fails with E2BIG (128 KiB per argument)
        proc = subprocess.run(argv, input=text, capture_output=True, text=True, check=False, env=env)
    except OSError as err:
        raise F5guardError(f"cannot run {interpreter} to speak: {err.strerror or err}") from err
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit {proc.returncode}"
        raise F5guardError(f"could not speak with {source.path.name}: {why.removeprefix('f5guard.trainer.sample: ')}")
    try:
        note = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}
