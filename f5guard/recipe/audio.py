"""Audio in and out for the recipe stages: any format to mono float at a chosen rate; PCM16 wav published atomically.

Decoding goes through torchcodec (FFmpeg: wav, mp3, m4a, flac, ogg, opus, aac, wma, webm), which also mixes
down and resamples inside FFmpeg; then torchaudio.load; then soundfile for the formats libsndfile reads.
A file none of them can decode raises ``AudioDecodeError`` with one line saying why; an I/O error (a vanished
file, Drive not answering) stays an ``OSError`` so a stage can tell "this file is bad" from "try again later".
torch, torchcodec and soundfile are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from f5guard.fsutil import atomic_write_bytes
from f5guard.recipe.stagecli import one_line

if TYPE_CHECKING:
    import numpy as np
    import torch

AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".aac", ".wma", ".webm"})
_SOUNDFILE_EXTENSIONS = frozenset({".wav", ".flac", ".ogg"})


class AudioDecodeError(ValueError):
    """The file's content cannot be decoded as audio (corrupt, truncated, not audio at all, or silent-empty)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def is_audio_name(name: str) -> bool:
    """An audio file by its extension, case-insensitively (``.MP3`` from phones counts)."""
    return Path(name).suffix.lower() in AUDIO_EXTENSIONS


def load_mono(path: Path, sample_rate: int) -> torch.Tensor:
    """The whole file as a 1-D float32 tensor at ``sample_rate`` Hz, channels averaged."""
    path = Path(os.path.abspath(path))  # absolute: FFmpeg reads "name:with colon" as a protocol otherwise
    os.stat(path)  # a missing or unreachable file is an OSError, not a decode error
    first_error: str | None = None
    for decoder in (_torchcodec, _torchaudio, _soundfile):
        try:
            samples = decoder(path, sample_rate)
        except AudioDecodeError:
            raise
        except OSError:
            raise
        except Exception as err:  # noqa: BLE001 - each decoder fails in its own way; the next one may work
            # the first decoder's message is the telling one (torchaudio wraps the same FFmpeg error)
            first_error = first_error or one_line(str(err).replace(str(path), path.name), 200)
            continue
        if samples is None:
            continue
        if samples.numel() == 0:
            raise AudioDecodeError(path, "no audio samples in the file")
        return samples.nan_to_num_(0.0).clamp_(-1.0, 1.0)
    raise AudioDecodeError(path, first_error or "no decoder available for this format")


def _torchcodec(path: Path, sample_rate: int) -> torch.Tensor:
    from torchcodec.decoders import AudioDecoder  # type: ignore[import-untyped,unused-ignore]

    data = AudioDecoder(str(path), sample_rate=sample_rate, num_channels=1).get_all_samples().data
    mono: torch.Tensor = data.mean(dim=0).contiguous().float()
    return mono


def _torchaudio(path: Path, sample_rate: int) -> torch.Tensor:
    import torchaudio

    wav, rate = torchaudio.load(str(path))
    return _resample(wav.mean(dim=0).float(), rate, sample_rate)


def _soundfile(path: Path, sample_rate: int) -> torch.Tensor | None:
    if path.suffix.lower() not in _SOUNDFILE_EXTENSIONS:
        return None
    import soundfile as sf
    import torch

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return _resample(torch.from_numpy(data.mean(axis=1)), int(rate), sample_rate)


def _resample(samples: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    if rate == target:
        return samples
    import torchaudio.functional as taf

    out: torch.Tensor = taf.resample(samples, rate, target)
    return out


def resample(samples: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    """Band-limited resampling of a 1-D tensor (torchaudio's sinc interpolation)."""
    return _resample(samples, rate, target)


def wav_bytes(samples: np.ndarray | torch.Tensor, sample_rate: int) -> bytes:
    """Mono PCM16 wav bytes (what F5-TTS and Whisper read fastest; half the size of float)."""
    import numpy as np
    import soundfile as sf

    array = samples.detach().cpu().numpy() if hasattr(samples, "detach") else np.asarray(samples)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(array, -1.0, 1.0).astype("float32"), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def write_wav(path: Path, samples: np.ndarray | torch.Tensor, sample_rate: int) -> None:
    """Publish a mono PCM16 wav atomically: a reader never sees half a clip."""
    atomic_write_bytes(path, wav_bytes(samples, sample_rate))
