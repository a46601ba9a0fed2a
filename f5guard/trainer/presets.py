"""Model presets: the DiT architectures the entry can build, by name (torch-free, plain data).

small/base mirror F5-TTS 1.1.22's configs/F5TTS_v1_Small.yaml and F5TTS_v1_Base.yaml ``model.arch``, so a
checkpoint trained here loads wherever those configs do; tiny is a 188k-parameter model for tests on a CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

_V1_COMMON: dict[str, Any] = {
    "ff_mult": 2,
    "text_dim": 512,
    "text_mask_padding": True,
    "qk_norm": None,
    "conv_layers": 4,
    "pe_attn_head": None,
    "attn_backend": "torch",
    "attn_mask_enabled": False,
    "checkpoint_activations": False,
}

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "tiny": MappingProxyType({
        "dim": 64, "depth": 2, "heads": 2, "dim_head": 32, "ff_mult": 2, "text_dim": 32, "conv_layers": 1,
        "text_mask_padding": True, "qk_norm": None, "pe_attn_head": None, "attn_backend": "torch",
        "attn_mask_enabled": False, "checkpoint_activations": False,
    }),
    "small": MappingProxyType({"dim": 768, "depth": 18, "heads": 12, **_V1_COMMON}),  # F5TTS_v1_Small
    "base": MappingProxyType({"dim": 1024, "depth": 22, "heads": 16, **_V1_COMMON}),  # F5TTS_v1_Base
})  # fmt: skip

# The mel front end every F5-TTS v1 config uses; vocos is the vocoder the released models pair with.
MEL_SPEC: Mapping[str, Any] = MappingProxyType({
    "target_sample_rate": 24000,
    "n_mel_channels": 100,
    "hop_length": 256,
    "win_length": 1024,
    "n_fft": 1024,
    "mel_spec_type": "vocos",
})  # fmt: skip


def dit_kwargs(preset: str) -> dict[str, Any]:
    """DiT(**kwargs) for a preset, without the vocab-dependent text_num_embeds."""
    return dict(PRESETS[preset])
