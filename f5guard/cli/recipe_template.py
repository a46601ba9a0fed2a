"""``f5guard init --audio``: one run per speaker folder, every recipe stage written out with its defaults, so a
Colab user writes no pipeline by hand and can still see (and change) every path and knob."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from f5guard.config import NAME_BYTES
from f5guard.errors import UsageError
from f5guard.recipe import options
from f5guard.recipe.audio import AUDIO_EXTENSIONS
from f5guard.recipe.pretrained import RELEASES, VOCAB, model_file
from f5guard.schema import escaped, path_problem


@dataclass
class Speakers:
    """What an audio folder holds: runs to create (name, folder), loose files, and folders that cannot be runs."""

    runs: list[tuple[str, Path]]
    loose: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one note each: the folder (bytes escaped) and why


def is_audio(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def unusable_name(name: str) -> str | None:
    """Why a folder's name cannot name a run (the config is UTF-8 text; names become folder names), or None.

    The rule for a name that is not UTF-8 (``bad\\xff``, from an old archive or a Windows zip): the folder is
    skipped with a note that shows its bytes escaped, never guessed at: renaming it is the user's call.
    """
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "its name is not valid UTF-8; rename it to use it"
    if any(ord(c) < 32 for c in name):  # as config.check_name refuses them
        return "its name holds control characters; rename it to use it"
    if size > NAME_BYTES:
        return f"its name is {size} bytes, more than a run name's {NAME_BYTES}; rename it to use it"
    return None


def find_speakers(audio_dir: Path) -> Speakers:
    """One run per speaker folder that holds audio; else the folder itself is one speaker."""
    if not audio_dir.is_dir():
        hint = " (is Drive mounted?)" if "/drive/" in str(audio_dir) else ""
        raise UsageError(f"audio folder {escaped(str(audio_dir))} does not exist{hint}")
    problem = path_problem(str(audio_dir), utf8=True)
    if problem:
        raise UsageError(f"audio folder: {problem}")
    folders = sorted(p for p in audio_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = Speakers([])
    for folder in folders:
        if not any(is_audio(f) for f in folder.rglob("*")):
            continue
        why = unusable_name(folder.name)
        if why:
            found.skipped.append(f"skipped the speaker folder {escaped(str(folder))}: {why}")
        else:
            found.runs.append((folder.name, folder))
    found.loose = sorted(p for p in audio_dir.iterdir() if is_audio(p))
    if found.runs or found.skipped:
        return found
    if found.loose:
        why = unusable_name(audio_dir.name)
        if why:
            raise UsageError(f"audio folder {escaped(str(audio_dir))}: {why}")
        return Speakers([(audio_dir.name, audio_dir)])
    exts = ", ".join(sorted(e.lstrip(".") for e in AUDIO_EXTENSIONS))
    raise UsageError(f"no audio files ({exts}) in {escaped(str(audio_dir))} or its speaker folders")


def q(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(path: str) -> str:
    """A path for a key whose placeholders expand: a folder named ``Bob {2}`` keeps its braces."""
    return path.replace("{", "{{").replace("}", "}}")


def qpath(path: str) -> str:
    return q(literal(path))


HEADER = """\
# f5guard.toml for the F5-TTS Vietnamese recipe, written by `f5guard init`. Docs: docs/config.md, docs/colab.md
# One run per speaker: setup -> pretrained -> ingest -> (separate) -> segment -> transcribe -> prepare -> train.
# Stages whose outputs on home (Drive) are intact are skipped on the next `f5guard start`; setup reruns on a new VM.

home = {home}          # persistent: survives the VM
work = {work}          # fast local disk: lost with the VM; checkpoints are written here, then synced to home
# python = "auto"     # the Python of the training stack: "auto" finds the one with f5_tts (else torch); or a path

[restart]              # for the train stage
budget = 10            # restarts per hour before the run is FATAL with the reason
"""

RUN = """
[[runs]]
name = {name}

[[runs.stages]]
# Checks torch, torchaudio, f5-tts, Silero VAD, Whisper and the GPU; installs what is missing, matched to the torch
# that is there (the pins when it cannot stay). Checked once per VM: the other runs' setup reuses the verdict.
name = "setup"
type = "setup"

{pretrained_stage}
[[runs.stages]]
# Inventories this speaker's audio with content hashes: a changed file reruns what depends on it.
name = "ingest"
type = "ingest"
audio = {audio}

# Optional: Demucs vocals extraction (music or noise under the voice). To use it, uncomment this stage and point
# segment's `inventory` at "{{home}}/runs/{{run}}/separate/inventory.json".
# [[runs.stages]]
# name = "separate"
# type = "separate"
# inventory = "{{home}}/runs/{{run}}/ingest/inventory.json"
# model = {separate_model}

[[runs.stages]]
name = "segment"               # Silero VAD -> 24 kHz mono clips within F5-TTS's 0.3-30 s
type = "segment"
inventory = "{{home}}/runs/{{run}}/ingest/inventory.json"
min_speech_s = {min_speech_s}
min_silence_s = {min_silence_s}
max_clip_s = {max_clip_s}

[[runs.stages]]
name = "transcribe"            # Whisper -> metadata.csv (audio_file|text); resumes clip by clip
type = "transcribe"
clips = "{{home}}/runs/{{run}}/segment/clips.json"
model = {whisper_model}
language = {language}

[[runs.stages]]
name = "prepare"               # F5-TTS's own preparation (raw.arrow, duration.json, vocab.txt){prepare_note}
type = "prepare"
metadata = "{{home}}/runs/{{run}}/transcribe/metadata.csv"
{prepare_pretrained}
[[runs.stages]]
name = "train"
type = "train"
dataset = "{{home}}/runs/{{run}}/prepare/data"
model = {model}
{train_pretrained}learning_rate = 1e-5
batch_size_per_gpu = 3200      # frames per GPU batch (T4 16 GB); lower it on "CUDA out of memory"
batch_size_type = "frame"
max_samples = 64
epochs = 100
num_warmup_updates = 1000
save_per_updates = 2000
last_per_updates = 500
keep_last_n_checkpoints = 1    # a Base checkpoint is ~5 GB
save_every_minutes = 10        # model_last.pt at least this often: a crash loses at most this much
num_workers = 2                # F5-TTS's own default of 16 runs Colab out of RAM
keep_durable = 1               # verified checkpoints kept on Drive (15 GB free holds ~2)
export_every = 10000           # + at the end: EMA-only fp16 copy for inference on Drive (~0.7 GB); 0 = off
sample_every = 2000            # hear the voice: runs/<run>/samples/u<update>.wav on Drive (+ at the end); 0 = off
sample_text = "Xin chào, đây là giọng nói của tôi sau khi được huấn luyện."
"""

PRETRAINED_STAGE = """[[runs.stages]]
name = "pretrained"            # the released model, downloaded once onto home
type = "pretrained"
model_name = {name}
out = "{{home}}/pretrained/{name_raw}"
"""


# The defaults written out, from the one declaration the stage table and each entry also use.
_RECIPE_DEFAULTS = {
    "separate_model": q(str(options.SEPARATE_MODEL.default)),
    **{key: options.default(options.SEGMENT, key) for key in ("min_speech_s", "min_silence_s", "max_clip_s")},
    "whisper_model": q(str(options.default(options.TRANSCRIBE, "model"))),
}


def render(home: Path, work: str, audio_dir: Path, *, language: str, pretrained: str | None) -> tuple[str, Speakers]:
    """The config text, and what the audio folder holds (the caller notes the loose and skipped)."""
    speakers = find_speakers(audio_dir)
    if not speakers.runs:
        raise UsageError(f"no speaker folder in {escaped(str(audio_dir))} can be a run: {speakers.skipped[0]}")
    text = HEADER.format(home=qpath(str(home)), work=qpath(work))
    for name, folder in speakers.runs:
        stage, prepare, train, model, note = "", "", "", q("small"), ""
        if pretrained:
            if Path(pretrained).suffix in (".pt", ".safetensors"):
                local = Path(pretrained).expanduser().resolve()
                model_path, vocab = literal(str(local)), literal(str(local.parent / VOCAB))
            else:
                if pretrained not in RELEASES:
                    raise UsageError(
                        f"unknown pretrained model {pretrained!r}: give a .pt/.safetensors path or one "
                        f"of {', '.join(RELEASES)} (or 'none')"
                    )
                stage = PRETRAINED_STAGE.format(name=q(pretrained), name_raw=pretrained) + "\n"
                model_path = f"{{home}}/pretrained/{pretrained}/{model_file(pretrained)}"
                vocab = f"{{home}}/pretrained/{pretrained}/{VOCAB}"
            prepare = f"pretrained = {q(model_path)}\npretrained_vocab = {q(vocab)}\n"
            train = 'pretrained = "{home}/runs/{run}/prepare/pretrained_extended.pt"\n'
            model = q("base")
            note = (
                "; extends the\n# pretrained vocab with the missing Vietnamese letters and its text embedding "
                "to match (F5-TTS #449)"
            )
        text += RUN.format(
            name=q(name),
            audio=qpath(str(folder)),
            language=q(language),
            pretrained_stage=stage,
            prepare_pretrained=prepare,
            train_pretrained=train,
            model=model,
            prepare_note=note,
            **_RECIPE_DEFAULTS,
        )
    return text, speakers
