"""A tiny real F5-TTS dataset for tests and the demo: a few short wavs through F5-TTS's own preparation.

``python -m f5guard.trainer.tinydata OUT_DIR [--n 8] [--source auto|espeak|tones]`` writes OUT_DIR/wavs/,
OUT_DIR/metadata.csv (``audio_file|text``, absolute paths) and
OUT_DIR/data/{raw.arrow,duration.json,vocab.txt}.
Speech comes from espeak-ng's Vietnamese voice when installed, else from synthetic tones.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

Source = Literal["auto", "espeak", "tones"]

# Short Vietnamese sentences: the language f5guard's users fine-tune for, with its tone marks in the vocab.
TEXTS = (
    "Xin chào các bạn.",
    "Hôm nay trời đẹp quá.",
    "Tôi đang học tiếng Việt.",
    "Cảm ơn bạn rất nhiều.",
    "Chúng ta đi ăn phở nhé.",
    "Giọng nói này được tổng hợp.",
    "Một hai ba bốn năm.",
    "Hẹn gặp lại ngày mai.",
)


def make_wavs(out_dir: Path, n: int, source: Source = "auto") -> tuple[Path, str]:
    """Write n wavs and metadata.csv; return the CSV path and what made the audio."""
    wav_dir = out_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    espeak = shutil.which("espeak-ng")
    if source == "espeak" and espeak is None:
        raise FileNotFoundError("espeak-ng is not on PATH (install it, or use --source tones)")
    use_espeak = espeak is not None and source != "tones"
    rows = []
    for i in range(n):
        text = TEXTS[i % len(TEXTS)]
        path = (wav_dir / f"utt_{i:03d}.wav").resolve()
        if use_espeak:
            # espeak-ng writes 22.05 kHz PCM16: F5-TTS resamples it to 24 kHz, as it does user audio
            subprocess.run([str(espeak), "-v", "vi", "-s", str(140 + 10 * (i % 5)), "-w", str(path), text],
                           check=True, capture_output=True)  # fmt: skip
        else:
            _write_tone(path, i)
        rows.append((str(path), text))
    csv_path = out_dir / "metadata.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="|")
        writer.writerow(["audio_file", "text"])
        writer.writerows(rows)
    return csv_path, "espeak-ng (vi)" if use_espeak else "synthetic tones"


def _write_tone(path: Path, i: int) -> None:
    import numpy as np
    import soundfile as sf

    sr = 24000
    seconds = 1.0 + (i % 5) * 0.25
    t = np.arange(int(sr * seconds)) / sr
    f0 = 110 + 20 * i
    y = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.15 * np.sin(4 * np.pi * f0 * t)
    y += 0.02 * np.random.default_rng(i).standard_normal(t.shape)
    sf.write(str(path), y.astype("float32"), sr, subtype="PCM_16")


def make_dataset(out_dir: str | Path, n: int = 8, source: Source = "auto") -> Path:
    """Wavs + CSV, then F5-TTS's prepare_and_save_set (vocab built from the data, like --pretrain)."""
    root = Path(out_dir).resolve()
    csv_path, _ = make_wavs(root, n, source)
    from f5_tts.train.datasets.prepare_csv_wavs import prepare_and_save_set

    data_dir = root / "data"
    # is_finetune=True would copy the Emilia pinyin vocab from F5-TTS's git tree, which the wheel lacks
    prepare_and_save_set(str(csv_path), str(data_dir), is_finetune=False, num_workers=1)
    return data_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m f5guard.trainer.tinydata", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n", type=int, default=8, help="number of clips (default 8)")
    parser.add_argument("--source", choices=["auto", "espeak", "tones"], default="auto")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be >= 1")
    try:
        data_dir = make_dataset(args.out_dir, args.n, args.source)
    except (OSError, subprocess.CalledProcessError) as err:
        print(f"f5guard.trainer.tinydata: could not make the dataset in {args.out_dir}: {err}", file=sys.stderr)
        return 1
    print(data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
