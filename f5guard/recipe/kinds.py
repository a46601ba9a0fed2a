"""The Vietnamese recipe's stage kinds: each builds a ``python -m f5guard.recipe.<stage>`` command whose argv
fully determines its output, and declares inputs and outputs so fingerprints decide skipping.

Defaults chain the stages through home: ``{home}/runs/{run}/<stage>/``; ``f5guard init --audio`` writes every
path explicitly so the chain is visible in the config.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from f5guard.recipe import options
from f5guard.recipe.manifests import CLIPS, CLIPS_DIR, INVENTORY, MANIFEST, METADATA
from f5guard.recipe.options import Flag
from f5guard.schema import Scope, StageConfig, Table
from f5guard.stages.kinds import KindBuilder, StageBase

RUN_DIR = "{home}/runs/{run}"


def _module_argv(module: str) -> list[str]:
    return [sys.executable, "-m", f"f5guard.recipe.{module}"]


def _path(table: Table, base: StageBase, key: str, default: str | None) -> str | None:
    text = table.get(key, str, default if default is not None else "")
    return base.resolve(text, table.key_path(key), table.file) if text else None


def _flags(table: Table, flags: list[Flag]) -> list[str]:
    argv: list[str] = []
    for f in flags:
        value: object = table.get(f.key, f.kind, f.default)
        if value is None:
            continue
        if f.kind is bool:
            argv.append(f.flag if value else f"--no-{f.flag[2:]}")
        elif isinstance(value, list):
            argv += [f.flag, ",".join(str(v) for v in value)]
        else:
            argv += [f.flag, str(value)]
    return argv


def _finish(
    base: StageBase, kind: str, argv: list[str], inputs: list[str], outputs: list[str], scope: Scope | None = None
) -> StageConfig:
    stage = base.finish(kind, argv)
    return replace(
        stage,
        inputs=tuple(dict.fromkeys([*base.inputs, *inputs])),
        outputs=tuple(dict.fromkeys([*base.outputs, *outputs])),
        scope=scope or stage.scope,
    )


def build_setup(table: Table, base: StageBase) -> StageConfig:
    """Checks the training stack on this machine and installs what is missing (pinned): scope runtime."""
    # One report per run: two runs sharing one file would each see the other's write as a changed output.
    out = _path(table, base, "out", "{work}/setup/{run}.json")
    assert out is not None
    argv = [
        *_module_argv("setup"),
        "--out",
        out,
        *_flags(table, options.SETUP),
    ]
    scope = base.scope if table.has("scope") else Scope.RUNTIME
    return _finish(base, "setup", argv, [], [out], scope)


def build_pretrained(table: Table, base: StageBase) -> StageConfig:
    """Downloads a released F5-TTS model once, onto home (Drive): a recycled VM never downloads it again."""
    name = table.get(options.PRETRAINED_NAME.key, str, options.PRETRAINED_NAME.default)
    out = _path(table, base, "out", "{home}/pretrained/" + name)
    assert out is not None
    argv = [*_module_argv("pretrained"), options.PRETRAINED_NAME.flag, name, "--out", out]
    return _finish(base, "pretrained", argv, [], [f"{out}/{MANIFEST}"])


def build_ingest(table: Table, base: StageBase) -> StageConfig:
    audio = _path(table, base, "audio", None)
    if audio is None:
        table.fail("is required: the folder with this speaker's recordings", "audio")
    out = _path(table, base, "out", f"{RUN_DIR}/{{stage}}")
    argv = [*_module_argv("ingest"), "--audio", audio, "--out", str(out)]
    return _finish(base, "ingest", argv, [audio], [f"{out}/{INVENTORY}"])


def build_separate(table: Table, base: StageBase) -> StageConfig:
    inventory = _path(table, base, "inventory", f"{RUN_DIR}/ingest/{INVENTORY}")
    out = _path(table, base, "out", f"{RUN_DIR}/{{stage}}")
    model = table.get(options.SEPARATE_MODEL.key, str, options.SEPARATE_MODEL.default)
    inputs = [str(inventory)]
    if model.endswith((".th", ".safetensors", ".yaml")) or "/" in model:
        model = base.resolve(model, table.key_path(options.SEPARATE_MODEL.key), table.file)
        inputs.append(model)  # a local model file: replacing it must rerun the separation
    argv = [*_module_argv("separate"), "--inventory", str(inventory), "--out", str(out), "--model", model]
    argv += _flags(table, options.SEPARATE)
    return _finish(base, "separate", argv, inputs, [f"{out}/{INVENTORY}"])


def build_segment(table: Table, base: StageBase) -> StageConfig:
    inventory = _path(table, base, "inventory", f"{RUN_DIR}/ingest/{INVENTORY}")
    out = _path(table, base, "out", f"{RUN_DIR}/{{stage}}")
    argv = [*_module_argv("segment"), "--inventory", str(inventory), "--out", str(out), *_flags(table, options.SEGMENT)]
    return _finish(base, "segment", argv, [str(inventory)], [f"{out}/{CLIPS}"])


def build_transcribe(table: Table, base: StageBase) -> StageConfig:
    clips = _path(table, base, "clips", f"{RUN_DIR}/segment/{CLIPS}")
    out = _path(table, base, "out", f"{RUN_DIR}/{{stage}}")
    argv = [*_module_argv("transcribe"), "--clips", str(clips), "--out", str(out), *_flags(table, options.TRANSCRIBE)]
    # The clips' audio, not only their list: a re-segmented source may keep its clip names.
    clip_glob = f"{str(clips).rsplit('/', 1)[0]}/{CLIPS_DIR}/*.wav"
    return _finish(base, "transcribe", argv, [str(clips), clip_glob], [f"{out}/{METADATA}", f"{out}/{MANIFEST}"])


def build_prepare(table: Table, base: StageBase) -> StageConfig:
    metadata = _path(table, base, "metadata", f"{RUN_DIR}/transcribe/{METADATA}")
    out = _path(table, base, "out", f"{RUN_DIR}/{{stage}}")
    pretrained = _path(table, base, "pretrained", None)
    vocab = _path(table, base, "pretrained_vocab", None)
    if (pretrained is None) != (vocab is None):
        table.fail(
            "pretrained and pretrained_vocab go together: the vocab is what the pretrained model's "
            "text embedding was trained with",
            "pretrained" if pretrained is None else "pretrained_vocab",
        )
    argv = [*_module_argv("prepare"), "--metadata", str(metadata), "--out", str(out)]
    inputs = [str(metadata)]
    outputs = [f"{out}/{MANIFEST}", f"{out}/data/raw.arrow", f"{out}/data/duration.json", f"{out}/data/vocab.txt"]
    if pretrained and vocab:
        argv += ["--pretrained", pretrained, "--pretrained-vocab", vocab]
        inputs += [pretrained, vocab]
        outputs.append(f"{out}/pretrained_extended.pt")
    return _finish(base, "prepare", argv, inputs, outputs)


RECIPE_KINDS: dict[str, KindBuilder] = {
    "setup": build_setup,
    "pretrained": build_pretrained,
    "ingest": build_ingest,
    "separate": build_separate,
    "segment": build_segment,
    "transcribe": build_transcribe,
    "prepare": build_prepare,
}
