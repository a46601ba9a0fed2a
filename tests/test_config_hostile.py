"""One test per hostile config of issue 9: each was a traceback, or was accepted and failed later (or did harm);
now each is one ConfigError line naming the file and the key (exit 2), checked here word for word.

Every case edits the config `f5guard init --audio` writes for two speakers (run 0 "Ana": setup, pretrained,
ingest, segment, transcribe, prepare, train = stages[0..6]).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from f5guard.config import load_config
from f5guard.errors import ConfigError
from tests.test_config_fuzz import Generated, generate

SEPARATE_COMMENTED = """# [[runs.stages]]
# name = "separate"
# type = "separate"
# inventory = "{home}/runs/{run}/ingest/inventory.json"
# model = "htdemucs"
"""
ENV_ON_INGEST = 'type = "ingest"\n'
SEGMENT_BOUNDS = "min_speech_s = 2.0\nmin_silence_s = 0.5\nmax_clip_s = 30.0"
LAST = "export_every = 10000           # + at the end: EMA-only fp16 copy for inference on Drive (~0.7 GB); 0 = off\n"

# (case, text to replace (first occurrence), replacement, the message after "<config>: ")
REFUSED = [
    # numbers: finite, in range
    ("huge max_clip_s", "max_clip_s = 30.0", "max_clip_s = 1" + "0" * 400,
     "runs[0].stages[3].max_clip_s: is too large for a number: about 1e400"),
    ("lease nan", "[restart]", "[lease]\nduration_s = nan\n[restart]",
     "lease.duration_s: must be a finite number, got nan"),
    ("lease inf", "[restart]", "[lease]\narrival_timeout_s = inf\n[restart]",
     "lease.arrival_timeout_s: must be a finite number, got inf"),
    ("lease huge", "[restart]", "[lease]\nsettle_s = 1e300\n[restart]",
     "lease.settle_s: must be at most 31536000 (a year), got 1e+300"),
    ("negative grace", "[restart]", "stop_grace_s = -5\n[restart]",
     "stop_grace_s: must be positive, got -5"),
    ("stage grace nan", LAST, LAST + "stop_grace_s = nan\n",
     "runs[0].stages[6].stop_grace_s: must be a finite number, got nan"),
    ("negative count", "budget = 10 ", "budget = -1 ", "restart.budget: must be at least 0, got -1"),
    ("huge backoff factor", "budget = 10 ", "backoff_factor = 1e6\nbudget = 10 ",
     "restart.backoff_factor: must be at most 10, got 1e+06"),
    ("logs huge", "[restart]", "[logs]\nmax_bytes = 10000000000000000000000\n[restart]",
     "logs.max_bytes: must be at most 1099511627776, got about 1e22"),
    ("min_clip_s over half of max_clip_s", "max_clip_s = 30.0", "max_clip_s = 10.0\nmin_clip_s = 6.0",
     "runs[0].stages[3].min_clip_s: must be at most half of max_clip_s (10): a long region is cut into clips of at "
     "least min_clip_s each, got 6"),
    ("max_clip_s over F5-TTS's", "max_clip_s = 30.0", "max_clip_s = 45.0",
     "runs[0].stages[3].max_clip_s: must be >= 0.6 and <= 30 (F5-TTS trains on clips of 0.3-30 s and drops the "
     "rest), got 45"),
    ("min_speech_s over max_clip_s", SEGMENT_BOUNDS, "min_speech_s = 12.0\nmin_silence_s = 0.5\nmax_clip_s = 10.0",
     "runs[0].stages[3].min_speech_s: must be at most max_clip_s (10), got 12"),
    ("negative silence", "min_silence_s = 0.5", "min_silence_s = -0.5",
     "runs[0].stages[3].min_silence_s: must be >= 0, got -0.5"),
    ("threshold not a probability", "max_clip_s = 30.0", "max_clip_s = 30.0\nthreshold = 1.5",
     "runs[0].stages[3].threshold: must be > 0 and < 1 (a probability), got 1.5"),
    ("sample_rate zero", "max_clip_s = 30.0", "max_clip_s = 30.0\nsample_rate = 0",
     "runs[0].stages[3].sample_rate: must be >= 8000 and <= 192000 (in Hz), got 0"),
    ("sample_rate float", "max_clip_s = 30.0", "max_clip_s = 30.0\nsample_rate = 24000.5",
     "runs[0].stages[3].sample_rate: expected an integer, got a number (24000.5)"),
    ("no_speech_threshold", 'language = "vi"', 'language = "vi"\nno_speech_threshold = 2',
     "runs[0].stages[4].no_speech_threshold: must be >= 0 and <= 1 (a probability), got 2"),
    ("backend", 'language = "vi"', 'language = "vi"\nbackend = "fast"',
     "runs[0].stages[4].backend: must be one of auto, openai, faster, got 'fast'"),
    ("learning_rate nan", "learning_rate = 1e-5", "learning_rate = nan",
     "runs[0].stages[6].learning_rate: must be a finite number, got nan"),
    ("learning_rate zero", "learning_rate = 1e-5", "learning_rate = 0",
     "runs[0].stages[6].learning_rate: must be > 0, got 0.0"),
    ("learning_rate above 1", "learning_rate = 1e-5", "learning_rate = 5",
     "runs[0].stages[6].learning_rate: must be <= 1, got 5.0"),
    ("epochs zero", "epochs = 100", "epochs = 0", "runs[0].stages[6].epochs: must be >= 1, got 0"),
    ("batch size zero", "batch_size_per_gpu = 3200", "batch_size_per_gpu = 0",
     "runs[0].stages[6].batch_size_per_gpu: must be >= 1, got 0"),
    ("threads huge", LAST, LAST + "threads = 1000000000000000000000000000000\n",
     "runs[0].stages[6].threads: must be <= 1024, got about 1e30"),
    ("hang_minutes nan", LAST, LAST + "hang_minutes = nan\n",
     "runs[0].stages[6].hang_minutes: must be a finite number, got nan"),
    ("keep_durable huge", "keep_durable = 1 ", "keep_durable = 100000 ",
     "runs[0].stages[6].keep_durable: must be at most 100, got 100000"),
    # required strings
    ("empty dataset", 'dataset = "{home}/runs/{run}/prepare/data"', 'dataset = ""',
     "runs[0].stages[6].dataset: must not be empty"),
    ("empty whisper model", 'model = "large-v3"', 'model = ""', "runs[0].stages[4].model: must not be empty"),
    ("empty language", 'language = "vi"', 'language = ""', "runs[0].stages[4].language: must not be empty"),
    ("blank language", 'language = "vi"', 'language = "  "', "runs[0].stages[4].language: must not be blank"),
    ("empty pretrained out", 'out = "{home}/pretrained/F5TTS_v1_Base"', 'out = ""',
     "runs[0].stages[1].out: must not be empty"),
    ("setup need with a comma", 'type = "setup"', 'type = "setup"\nneed = ["torch,f5_tts"]',
     "runs[0].stages[0].need: item 0 ('torch,f5_tts') must be non-empty and contain no ',': the list travels as one "
     "comma-separated argument"),
    # NUL bytes, env keys
    ("NUL in home", 'home = "', 'home = "\\u0000',
     "home: '\\x00{root}/drive/home' contains a NUL byte (\\0), which no path, argument or environment value can hold"),
    ("NUL in work", 'work = "', 'work = "/tmp\\u0000',
     "work: '/tmp\\x00{root}/work' contains a NUL byte (\\0), which no path, argument or environment value can hold"),
    ("NUL in a command argument", LAST, LAST + '[[runs.stages]]\nname = "x"\ncommand = ["echo", "a\\u0000b"]\n',
     "runs[0].stages[7].command[1]: 'a\\x00b' contains a NUL byte (\\0), which no path, argument or environment "
     "value can hold"),
    ("NUL in an env value", ENV_ON_INGEST, ENV_ON_INGEST + 'env = { A = "x\\u0000y" }\n',
     "runs[0].stages[2].env.A: 'x\\x00y' contains a NUL byte (\\0), which no path, argument or environment value "
     "can hold"),
    ("env key with =", ENV_ON_INGEST, ENV_ON_INGEST + 'env = { "A=B" = "x" }\n',
     "runs[0].stages[2].env: variable name 'A=B' must be non-empty and contain no '='"),
    ("empty env key", ENV_ON_INGEST, ENV_ON_INGEST + 'env = { "" = "x" }\n',
     "runs[0].stages[2].env: variable name '' must be non-empty and contain no '='"),
    # cwd and local models must exist, or be made by an earlier stage
    ("cwd that does not exist", ENV_ON_INGEST, ENV_ON_INGEST + 'cwd = "/nonexistent"\n',
     "runs[0].stages[2].cwd: the working folder /nonexistent does not exist, and no earlier stage of this run makes "
     "it"),
    ("cwd made only by this stage", ENV_ON_INGEST, ENV_ON_INGEST + 'cwd = "{home}/runs/{run}/ingest"\n',
     "runs[0].stages[2].cwd: the working folder {root}/drive/home/runs/Ana/ingest does not exist, and no earlier "
     "stage of this run makes it"),
    ("cwd that is a file", ENV_ON_INGEST, ENV_ON_INGEST + 'cwd = "{root}/audio/Ana/a.wav"\n',
     "runs[0].stages[2].cwd: {root}/audio/Ana/a.wav is not a folder"),
    ("whisper checkpoint that does not exist", 'model = "large-v3"', 'model = "/nope/large-v3.pt"',
     "runs[0].stages[4].model: the Whisper checkpoint /nope/large-v3.pt does not exist, and no earlier stage of this "
     "run makes it"),
    ("demucs model that does not exist", SEPARATE_COMMENTED,
     SEPARATE_COMMENTED.replace("# ", "").replace("htdemucs", "/nope/htdemucs.th"),
     "runs[0].stages[3].model: the local Demucs model /nope/htdemucs.th does not exist, and no earlier stage of this "
     "run makes it"),
    # placeholders, path lengths and encodings
    ("format spec", 'type = "segment"\ninventory = "{home}/', 'type = "segment"\ninventory = "{home:d}/',
     "runs[0].stages[3].inventory: placeholder '{home:d}' in '{home:d}/runs/{run}/ingest/inventory.json': "
     "placeholders are plain {name}, without a format spec or conversion (write {{ and }} for literal braces)"),
    ("conversion", 'work = "', 'work = "{home!z}',
     "work: placeholder '{home!z}' in '{home!z}{root}/work': placeholders are plain {name}, without a format "
     "spec or conversion (write {{ and }} for literal braces)"),
    ("huge width", 'out = "{home}/pretrained/F5TTS_v1_Base"', 'out = "{home:>99999999999999999999}"',
     "runs[0].stages[1].out: placeholder '{home:>99999999999999999999}' in '{home:>99999999999999999999}': "
     "placeholders are plain {name}, without a format spec or conversion (write {{ and }} for literal braces)"),
    ("300-character component in home", '/drive/home"', '/drive/' + "h" * 300 + '"',
     "home: the path component 'hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh...' is 300 bytes; a file "
     "name is at most 255 bytes"),
    ("run name too long", 'name = "Ana"', 'name = "' + "a" * 300 + '"',
     "runs[0].name: run name is 300 bytes; it becomes a folder name: at most 200"),
]  # fmt: skip


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    return generate(tmp_path_factory.mktemp("hostile"))


def edit(generated: Generated, name: str, old: str, new: str) -> Path:
    """The generated config with ``old`` replaced, written beside it (same folder: relative paths keep meaning)."""
    old, new = old.replace("{root}", str(generated.root)), new.replace("{root}", str(generated.root))
    assert old in generated.text, f"{name}: the generated config changed; update the case"
    path = generated.root / f"{name.replace(' ', '_')}.toml"
    path.write_text(generated.text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(("case", "old", "new", "message"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_one_line(generated: Generated, case: str, old: str, new: str, message: str) -> None:
    """Each case is one ConfigError line naming the file and the key (before: a traceback, or accepted)."""
    path = edit(generated, case, old, new)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.message == f"{path}: {message.replace('{root}', str(generated.root))}"


def test_integer_of_5000_digits_is_invalid_toml(generated: Generated) -> None:
    """tomllib raises a plain ValueError for it (Python's int_max_str_digits), not TOMLDecodeError: a traceback."""
    path = edit(generated, "digits", "epochs = 100", "epochs = 1" + "0" * 5000)
    with pytest.raises(ConfigError, match=r"invalid TOML: Exceeds the limit \(4300 digits\)") as caught:
        load_config(path)
    assert caught.value.message.startswith(f"{path}: invalid TOML: ")


ACCEPTED = [
    ("cwd made by an earlier stage", 'type = "segment"', 'type = "segment"\ncwd = "{home}/runs/{run}/ingest"'),
    ("cwd in work, which f5guard makes", ENV_ON_INGEST, ENV_ON_INGEST + 'cwd = "{work}"\n'),
    ("cwd that exists", ENV_ON_INGEST, ENV_ON_INGEST + 'cwd = "{root}/audio"\n'),
    ("a Hugging Face repo is a name, not a path", 'model = "large-v3"', 'model = "Systran/faster-whisper-small"'),
    ("a Whisper checkpoint that exists", 'model = "large-v3"', 'model = "{root}/audio/Ana/a.wav"'),
    ("an empty optional path means none", LAST, LAST + 'tokenizer_path = ""\n'),
    ("every bound's edge", SEGMENT_BOUNDS,
     "max_clip_s = 0.6\nmin_clip_s = 0.3\nmin_speech_s = 0.6\nmin_silence_s = 0\nsample_rate = 8000"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "old", "new"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted(generated: Generated, case: str, old: str, new: str) -> None:
    """The checks refuse what cannot work, not what merely looks unusual."""
    assert load_config(edit(generated, case, old, new)).runs


def test_cli_prints_one_line_and_exits_2(generated: Generated) -> None:
    """The real CLI on the issue's first case: one line on stderr, exit 2, no traceback."""
    path = edit(generated, "cli", "[restart]", "[lease]\nduration_s = nan\n[restart]")
    proc = subprocess.run(
        [sys.executable, "-m", "f5guard", "start", "--dry-run", "--config", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"f5guard: {path}: lease.duration_s: must be a finite number, got nan"]
