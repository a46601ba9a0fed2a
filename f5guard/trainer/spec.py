"""The training spec: everything one run of ``python -m f5guard.trainer`` needs, as one JSON file.

Torch-free on purpose: the daemon writes and validates specs without importing the training stack.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from f5guard.errors import ConfigError
from f5guard.schema import shorten, show_number

ModelPreset = Literal["tiny", "small", "base"]
Tokenizer = Literal["custom", "char", "pinyin"]
BatchSizeType = Literal["frame", "sample"]
MixedPrecision = Literal["auto", "no", "fp16", "bf16"]  # "auto": resolved by the trainer (trainer/hardware.py)
AUTO = "auto"  # batch_size_per_gpu = "auto": a frame budget from the GPU's memory (trainer/batches.py)
Processes = int | Literal["auto"]  # "auto": every visible GPU, 1 without one (f5guard.trainer.group)

SPEC_VERSION = 1
DATASET_FILES = ("raw.arrow", "duration.json")
# Upper bounds: beyond them a value is a typo. Counts reach torch and the DataLoader as C ints; every worker or
# thread is a process or an OS thread; a learning rate above 1 diverges AdamW at the first update.
MAX_COUNT = 2**31 - 1
MAX_SEED = 2**32 - 1  # what numpy and most seeding habits take
MAX_PARALLEL = 1024  # num_workers, threads
MAX_LEARNING_RATE = 1.0
MAX_MINUTES = 365 * 24 * 60.0  # save_every_minutes: a year
MAX_THROTTLE_S = 3600.0


class SpecError(ConfigError):
    """A training spec that cannot work; one line naming the spec file and the field."""


class _Invalid(SpecError):
    """A field problem before the source is known; from_dict rewords it with the spec's path."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"training spec: {detail}")
        self.detail = detail


def _path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)


@dataclass(frozen=True)
class TrainSpec:
    """One training run. Defaults follow f5-tts_finetune-cli, except num_workers (16 there: RAM OOM, #440)."""

    dataset_dir: Path  # raw.arrow, duration.json, vocab.txt (prepare_csv_wavs output)
    checkpoint_dir: Path  # explicit: never F5-TTS's package-relative ckpts/
    progress_path: Path  # JSON lines, appended
    model: ModelPreset = "tiny"
    tokenizer: Tokenizer = "custom"
    tokenizer_path: Path | None = None  # default: dataset_dir/vocab.txt
    pretrained: Path | None = None  # placed as pretrained_<name> when checkpoint_dir has no checkpoint
    learning_rate: float = 1e-5
    batch_size_per_gpu: int | Literal["auto"] = 3200
    batch_size_type: BatchSizeType = "frame"
    max_samples: int = 64
    epochs: int = 100
    num_warmup_updates: int = 20000
    grad_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    save_per_updates: int = 50000
    last_per_updates: int = 5000
    keep_last_n_checkpoints: int = -1
    save_every_minutes: float = 10.0  # 0 disables timed saves of model_last.pt
    num_workers: int = 1
    seed: int = 0
    throttle_s: float = 0.0  # sleep after each update: lets tests land a signal mid-run deterministically
    threads: int | None = None  # torch.set_num_threads; None keeps torch's default
    mixed_precision: MixedPrecision = "auto"  # accelerate's mixed_precision; "auto": bf16/fp16 by GPU, "no" on CPU
    bnb_optimizer: bool = False  # bitsandbytes' 8-bit AdamW (F5-TTS's own option): CUDA only
    # Ranks of one data-parallel training; 1 by default because N ranks multiply the batch and divide the
    # updates per epoch (F5-TTS's own accounting), which must be a choice, not a surprise on a bigger VM.
    num_processes: Processes = 1
    # The NaN guard (trainer/nanguard.py): this many non-finite losses in a row stop the trainer without a save
    # (fp16's loss scaler skips the odd overflowing step by itself; three in a row is no longer odd).
    nan_patience: int = 3
    # Set by the daemon, never by a config: the trainer loads everything, then waits until this file exists
    # before its first step and its first write (trainevents.Gate). None: no gate (a trainer run by hand).
    gate_path: Path | None = None

    def __post_init__(self) -> None:
        for name in ("dataset_dir", "checkpoint_dir", "progress_path", "tokenizer_path", "pretrained", "gate_path"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        """Raise _Invalid (one line, without the source) for the first field that cannot work."""
        for name, allowed in (
            ("model", get_args(ModelPreset)),
            ("tokenizer", get_args(Tokenizer)),
            ("batch_size_type", get_args(BatchSizeType)),
            ("mixed_precision", get_args(MixedPrecision)),
        ):
            if getattr(self, name) not in allowed:
                raise _Invalid(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("dataset_dir", "checkpoint_dir", "progress_path"):
            if not str(getattr(self, name)).strip() or str(getattr(self, name)) == ".":
                raise _Invalid(f"{name} must be a non-empty path")
        if not isinstance(self.bnb_optimizer, bool):
            raise _Invalid(f"bnb_optimizer must be true or false, got {_shown(self.bnb_optimizer)}")
        if self.batch_size_per_gpu == AUTO:
            if self.batch_size_type != "frame":
                raise _Invalid("batch_size_per_gpu can be 'auto' only with batch_size_type = 'frame' (a frame budget)")
        elif isinstance(self.batch_size_per_gpu, str):
            raise _Invalid(f"batch_size_per_gpu must be an integer or 'auto', got {_shown(self.batch_size_per_gpu)}")
        else:
            _check_int("batch_size_per_gpu", self.batch_size_per_gpu, 1, MAX_COUNT)
        ints = {
            "max_samples": (1, MAX_COUNT), "epochs": (1, MAX_COUNT),
            "num_warmup_updates": (0, MAX_COUNT), "grad_accumulation_steps": (1, MAX_COUNT),
            "save_per_updates": (1, MAX_COUNT), "last_per_updates": (1, MAX_COUNT),
            "keep_last_n_checkpoints": (-1, MAX_COUNT), "num_workers": (1, MAX_PARALLEL), "seed": (0, MAX_SEED),
            "nan_patience": (1, MAX_COUNT),
        }  # fmt: skip
        for name, (minimum, maximum) in ints.items():
            _check_int(name, getattr(self, name), minimum, maximum)
        if self.threads is not None:
            _check_int("threads", self.threads, 1, MAX_PARALLEL)
        if self.num_processes != "auto":
            try:
                _check_int("num_processes", self.num_processes, 1, MAX_PARALLEL)
            except _Invalid:
                raise _Invalid(
                    f'num_processes must be "auto" or an integer from 1 to {MAX_PARALLEL}, '
                    f"got {_shown(self.num_processes)}"
                ) from None
        floats = {
            "max_grad_norm": (0.0, math.inf), "save_every_minutes": (0.0, MAX_MINUTES),
            "throttle_s": (0.0, MAX_THROTTLE_S), "learning_rate": (0.0, MAX_LEARNING_RATE),
        }  # fmt: skip
        for name, (low, high) in floats.items():
            _check_float(name, getattr(self, name), low, high)
        if self.learning_rate <= 0:
            raise _Invalid(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.num_workers < 1:  # Trainer always sets persistent_workers=True, which needs workers
            raise _Invalid("num_workers must be >= 1 (F5-TTS uses persistent DataLoader workers)")

    def check_inputs(self) -> None:
        """Raise SpecError if the dataset, vocab or pretrained file is missing (checked at run time)."""
        for name in DATASET_FILES:
            if not (self.dataset_dir / name).is_file():
                raise SpecError(f"dataset {self.dataset_dir}: missing {name} (run prepare_csv_wavs first)")
        if not self.vocab_path.is_file():
            raise SpecError(f"tokenizer file {self.vocab_path} does not exist")
        if self.pretrained is not None and not self.pretrained.is_file():
            raise SpecError(f"pretrained checkpoint {self.pretrained} does not exist")

    @property
    def vocab_path(self) -> Path:
        """The vocab file to read. F5-TTS's pinyin/char modes differ from custom only in looking it up
        package-relative (data/{name}_{tokenizer}/vocab.txt); the text was converted at prepare time."""
        return self.tokenizer_path if self.tokenizer_path is not None else self.dataset_dir / "vocab.txt"

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": SPEC_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write the spec atomically (the daemon may rewrite it while an old trainer is starting)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, target)

    @classmethod
    def from_dict(cls, data: Any, source: str = "training spec") -> TrainSpec:
        if not isinstance(data, dict):
            raise SpecError(f"{source}: expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise SpecError(f"{source}: spec version {version!r} is not supported (expected {SPEC_VERSION})")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise SpecError(f"{source}: unknown field(s) {', '.join(unknown)}")
        missing = [n for n in ("dataset_dir", "checkpoint_dir", "progress_path") if n not in data]
        if missing:
            raise SpecError(f"{source}: missing required field(s) {', '.join(missing)}")
        for name in ("dataset_dir", "checkpoint_dir", "progress_path", "tokenizer_path", "pretrained", "gate_path"):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise SpecError(f"{source}: {name} must be a path string, got {type(value).__name__}")
        try:
            return cls(**data)
        except _Invalid as err:
            raise SpecError(f"{source}: {err.detail}") from None

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> TrainSpec:
        """Read and validate a spec file; every problem is one SpecError line naming the file."""
        source = f"training spec {path}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise SpecError(f"could not read {source}: {err.strerror or err}") from err
        try:
            data = json.loads(text)
        except ValueError as err:
            raise SpecError(f"{source}: not valid JSON ({err})") from err
        return cls.from_dict(data, source)


def _check_int(name: str, value: Any, minimum: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{name} must be an integer, got {_shown(value)}")
    if value < minimum:
        raise _Invalid(f"{name} must be >= {minimum}, got {_shown(value)}")
    if value > maximum:
        raise _Invalid(f"{name} must be <= {maximum}, got {_shown(value)}")


def _check_float(name: str, value: Any, minimum: float, maximum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"{name} must be a finite number, got {_shown(value)}")
    if isinstance(value, int) and abs(value) > sys.float_info.max:  # math.isfinite would raise OverflowError
        raise _Invalid(f"{name} must be a finite number, got {_shown(value)}")
    if not math.isfinite(value):
        raise _Invalid(f"{name} must be a finite number, got {value!r}")
    if value < minimum:
        raise _Invalid(f"{name} must be >= {minimum}, got {value}")
    if value > maximum:
        raise _Invalid(f"{name} must be <= {maximum:g}, got {value}")


def _shown(value: Any) -> str:
    """A value for a message: a JSON spec may hold an integer of thousands of digits, which repr() refuses."""
    return show_number(value) if isinstance(value, (int, float)) else shorten(repr(value))
