"""A tiny RANDOM vocos vocoder for tests and benches: the layout of charactr/vocos-mel-24khz (config.yaml +
pytorch_model.bin, the 24 kHz / 100-mel / hop-256 front end F5-TTS uses), with small dims and untrained weights.

``python -m f5guard.trainer.tinyvocoder OUT_DIR`` writes it; F5-TTS's ``load_vocoder(is_local=True,
local_path=OUT_DIR)`` loads it like the real one, with no download. It makes noise, not speech: it proves the
path, never the quality.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CONFIG = """\
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args: {sample_rate: 24000, n_fft: 1024, hop_length: 256, n_mels: 100, padding: center}
backbone:
  class_path: vocos.models.VocosBackbone
  init_args: {input_channels: 100, dim: 32, intermediate_dim: 64, num_layers: 1}
head:
  class_path: vocos.heads.ISTFTHead
  init_args: {dim: 32, n_fft: 1024, hop_length: 256, padding: center}
"""


def make_vocoder(out_dir: str | Path, seed: int = 0) -> Path:
    """Write config.yaml and random weights; returns the directory."""
    import torch
    from vocos import Vocos

    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(CONFIG, encoding="utf-8")
    torch.manual_seed(seed)
    model = Vocos.from_hparams(str(root / "config.yaml"))
    torch.save(model.state_dict(), root / "pytorch_model.bin")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m f5guard.trainer.tinyvocoder", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        print(make_vocoder(args.out_dir))
    except OSError as err:
        print(f"f5guard.trainer.tinyvocoder: could not write {args.out_dir}: {err.strerror or err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
