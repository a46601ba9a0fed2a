"""The Vietnamese recipe's stage kinds: each builds a ``python -m f5guard.recipe.<stage>`` command whose argv
fully determines its output, and declares inputs and outputs so fingerprints decide skipping.

Defaults chain the stages through home: ``{home}/runs/{run}/<stage>/``; ``f5guard init --audio`` writes every
path explicitly so the chain is visible in the config.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace

from f5guard.recipe import options
from f5guard.recipe.manifests import CLIPS, CLIPS_DIR, INVENTORY, MANIFEST, METADATA
from f5guard.recipe.options import Flag
from f5guard.schema import Scope, StageConfig, Table, check_argument, check_path, shorten
from f5guard.stages.kinds import KindBuilder, StageBase

RUN_DIR = "{home}/runs/{run}"


def _module_argv(base: StageBase, module: str) -> list[str]:
    """``python -m f5guard.recipe.<module>`` in the stack python (``python`` in f5guard.toml)."""
    return [base.values["python"], "-m", f"f5guard.recipe.{module}"]


def _path(table: Table, base: StageBase, key: str, default: str) -> str:
    """A path key: ``default`` when absent; when given, not empty (an empty ``out`` would mean the config folder)."""
    text = table.text(key) if table.has(key) else table.get(key, str, default)
    return base.resolve(text, table.key_path(key), table.file)


def _optional_path(table: Table, base: StageBase, key: str) -> str | None:
    """A path key without a default: absent or "" (TOML has no null) means none."""
    text = table.get(key, str, "")
    return base.resolve(text, table.key_path(key), table.file) if text else None


def _flags(table: Table, flags: list[Flag]) -> list[str]:
    return _argv(table, flags, _values(table, flags))


def _values(table: Table, flags: list[Flag]) -> dict[str, object]:
    return {f.key: _flag_value(table, f) for f in flags}


def _argv(table: Table, flags: list[Flag], values: dict[str, object]) -> list[str]:
    argv: list[str] = []
    for f in flags:
        value = values[f.key]
        if value is None:
            continue
        if f.kind is bool:
            argv.append(f.flag if value else f"--no-{f.flag[2:]}")
        elif isinstance(value, list):
            argv += [f.flag, ",".join(str(v) for v in value)]
        else:
            argv += [f.flag, check_argument(str(value), table.key_path(f.key), table.file)]
    return argv


def _flag_value(table: Table, f: Flag) -> object:
    """The option's value checked the way its entry will need it: no empty name, no NaN, no number out of range."""
    if f.kind is bool:
        return table.get(f.key, bool, f.default)
    if f.default is None and not table.has(f.key):
        return table.get(f.key, f.kind, None)  # left out of argv: the entry's own default
    if f.kind is list:
        items = table.str_list(f.key, f.default)
        for i, item in enumerate(items):
            if not item.strip() or "," in item:
                table.fail(
                    f"item {i} ({shorten(item)!r}) must be non-empty and contain no ',': the list travels as one "
                    "comma-separated argument",
                    f.key,
                )
        return items
    if f.kind is str:
        value = table.text(f.key, f.default)
        if f.choices and value not in f.choices:
            table.fail(f"must be one of {', '.join(f.choices)}, got {shorten(value)!r}", f.key)
        return value
    number: object = table.get(f.key, f.kind, f.default)
    if not isinstance(number, (int, float)) or isinstance(number, bool):
        raise TypeError(f"{f.key}: the option's kind must be str, int, float, bool or list")  # a bug in options
    if isinstance(number, float) and not math.isfinite(number):
        table.fail(f"must be a finite number, got {number!r}", f.key)
    problem = f.out_of_range(number)
    if problem:
        table.fail(problem, f.key)
    return number


def _finish(
    base: StageBase, kind: str, argv: list[str], inputs: list[str], outputs: list[str], scope: Scope | None = None
) -> StageConfig:
    stage = base.finish(kind, argv, python=base.python)
    return replace(
        stage,
        inputs=tuple(dict.fromkeys([*base.inputs, *inputs])),
        outputs=tuple(dict.fromkeys([*base.outputs, *outputs])),
        scope=scope or stage.scope,
    )


def build_setup(table: Table, base: StageBase) -> StageConfig:
    """Checks the training stack on this machine and installs what is missing (matched to its torch, else pinned):
    scope runtime, so every run's setup runs on a new VM; after the first, it reuses the machine stamp in ms."""
    # One report per run: two runs sharing one file would each see the other's write as a changed output.
    out = _path(table, base, "out", "{work}/setup/{run}.json")
    argv = [
        *_module_argv(base, "setup"),
        "--out",
        out,
        *_flags(table, options.SETUP),
    ]
    scope = base.scope if table.has("scope") else Scope.RUNTIME
    return _finish(base, "setup", argv, [], [out], scope)


def build_pretrained(table: Table, base: StageBase) -> StageConfig:
    """Downloads a released F5-TTS model once, onto home (Drive): a recycled VM never downloads it again."""
    key = options.PRETRAINED_NAME.key
    name = table.text(key, options.PRETRAINED_NAME.default)
    if any(c in name for c in "/{}") or name in (".", ".."):
        table.fail(f"must be a release's name, such as {options.PRETRAINED_NAME.default}, got {shorten(name)!r}", key)
    out = _path(table, base, "out", "{home}/pretrained/" + name)
    argv = [*_module_argv(base, "pretrained"), options.PRETRAINED_NAME.flag, name, "--out", out]
    return _finish(base, "pretrained", argv, [], [f"{out}/{MANIFEST}"])


def build_ingest(table: Table, base: StageBase) -> StageConfig:
    if not table.has("audio"):
        table.fail("is required: the folder with this speaker's recordings", "audio")
    audio = _path(table, base, "audio", "")
    out = _path(table, base, "out", f"{RUN_DIR}/{{stage}}")
    argv = [*_module_argv(base, "ingest"), "--audio", audio, "--out", str(out)]
    return _finish(base, "ingest", argv, [audio], [f"{out}/{INVENTORY}"])


def build_separate(table: Table, base: StageBase) -> StageConfig:
    inventory = _path(table, base, "inventory", f"{RUN_DIR}/ingest/{INVENTORY}")
    out = _path(table, base, "out", f"{RUN_DIR}/{{stage}}")
    key = options.SEPARATE_MODEL.key
    model = table.text(key, options.SEPARATE_MODEL.default)
    inputs = [str(inventory)]
    if model.endswith((".th", ".safetensors", ".yaml")) or "/" in model:
        model = base.resolve(model, table.key_path(key), table.file)
        base.require(model, table, key, "the local Demucs model")  # else found only once the stage runs
        inputs.append(model)  # a local model file: replacing it must rerun the separation
    else:
        check_argument(model, table.key_path(key), table.file)
    argv = [*_module_argv(base, "separate"), "--inventory", str(inventory), "--out", str(out), "--model", model]
    argv += _flags(table, options.SEPARATE)
    return _finish(base, "separate", argv, inputs, [f"{out}/{INVENTORY}"])


def build_segment(table: Table, base: StageBase) -> StageConfig:
    inventory = _path(table, base, "inventory", f"{RUN_DIR}/ingest/{INVENTORY}")
    out = _path(table, base, "out", f"{RUN_DIR}/{{stage}}")
    values = _values(table, options.SEGMENT)
    _check_segment(table, values)
    argv = [*_module_argv(base, "segment"), "--inventory", str(inventory), "--out", str(out)]
    argv += _argv(table, options.SEGMENT, values)
    return _finish(base, "segment", argv, [str(inventory)], [f"{out}/{CLIPS}"])


def build_transcribe(table: Table, base: StageBase) -> StageConfig:
    clips = _path(table, base, "clips", f"{RUN_DIR}/segment/{CLIPS}")
    out = _path(table, base, "out", f"{RUN_DIR}/{{stage}}")
    argv = [
        *_module_argv(base, "transcribe"),
        "--clips",
        str(clips),
        "--out",
        str(out),
        *_flags(table, options.TRANSCRIBE),
    ]
    _check_whisper_path(table, base)
    # The clips' audio, not only their list: a re-segmented source may keep its clip names.
    clip_glob = f"{str(clips).rsplit('/', 1)[0]}/{CLIPS_DIR}/*.wav"
    return _finish(base, "transcribe", argv, [str(clips), clip_glob], [f"{out}/{METADATA}", f"{out}/{MANIFEST}"])


def _check_whisper_path(table: Table, base: StageBase) -> None:
    """A Whisper ``model`` that is a local checkpoint must be there (a name is downloaded when the stage runs).

    A path is what starts with '/', '.' or '~' or ends in '.pt'; "org/name" stays a name (faster-whisper takes
    Hugging Face repos). The entry gets the value as written, so a relative one is relative to the stage's cwd.
    """
    key = "model"
    model = table.get(key, str, options.default(options.TRANSCRIBE, key))
    if not (model.startswith(("/", ".", "~")) or model.endswith(".pt")):
        return
    path = check_path(os.path.join(base.cwd, model), table.key_path(key), table.file)
    base.require(os.path.normpath(path), table, key, "the Whisper checkpoint")


def _check_segment(table: Table, values: dict[str, object]) -> None:
    """The bounds that hold between segment's options: what the clip planner needs to make clips."""
    seconds = {key: float(v) for key, v in values.items() if isinstance(v, float)}
    longest = seconds["max_clip_s"]
    if 2 * seconds["min_clip_s"] > longest:
        table.fail(
            f"must be at most half of max_clip_s ({longest:g}): a long region is cut into clips of at least "
            f"min_clip_s each, got {seconds['min_clip_s']:g}",
            "min_clip_s",
        )
    for key in ("min_speech_s", "min_silence_s"):
        if seconds[key] > longest:
            table.fail(f"must be at most max_clip_s ({longest:g}), got {seconds[key]:g}", key)


def build_prepare(table: Table, base: StageBase) -> StageConfig:
    metadata = _path(table, base, "metadata", f"{RUN_DIR}/transcribe/{METADATA}")
    out = _path(table, base, "out", f"{RUN_DIR}/{{stage}}")
    pretrained = _optional_path(table, base, "pretrained")
    vocab = _optional_path(table, base, "pretrained_vocab")
    if (pretrained is None) != (vocab is None):
        table.fail(
            "pretrained and pretrained_vocab go together: the vocab is what the pretrained model's "
            "text embedding was trained with",
            "pretrained" if pretrained is None else "pretrained_vocab",
        )
    argv = [*_module_argv(base, "prepare"), "--metadata", str(metadata), "--out", str(out)]
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
