"""Build the F5-TTS objects for a spec: CFM + DiT from a preset, the Trainer, the dataset (imports torch)."""

from __future__ import annotations

import json
from typing import Any

import torch
from datasets import Dataset as ArrowDataset
from f5_tts.model import CFM, DiT, Trainer
from f5_tts.model.dataset import CustomDataset
from f5_tts.model.utils import get_tokenizer

from f5guard.trainer.hardware import probe, resolve
from f5guard.trainer.presets import MEL_SPEC, dit_kwargs
from f5guard.trainer.spec import AUTO, TrainSpec


def build_trainer(spec: TrainSpec) -> tuple[Any, int]:
    """The Trainer F5-TTS's own entries would build, minus every network path; and the parameter count.

    A concrete batch and accelerate's mixed_precision, which F5-TTS hands to ``Accelerator(**accelerate_kwargs)``
    (its entries get it from ``accelerate launch`` instead): the entry resolves "auto" first, to report what it
    chose; a spec built elsewhere (a notebook, a test) is resolved here for the GPU this process sees."""
    if AUTO in (spec.mixed_precision, spec.batch_size_per_gpu):
        spec, _ = resolve(spec, probe())
    assert isinstance(spec.batch_size_per_gpu, int)
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    # "custom" reads the vocab at a path; pinyin/char look it up package-relative (see TrainSpec.vocab_path)
    vocab_char_map, vocab_size = get_tokenizer(str(spec.vocab_path), "custom")
    model = CFM(
        transformer=DiT(**dit_kwargs(spec.model), text_num_embeds=vocab_size, mel_dim=MEL_SPEC["n_mel_channels"]),
        mel_spec_kwargs=dict(MEL_SPEC),
        vocab_char_map=vocab_char_map,
    )
    trainer = Trainer(
        model,
        epochs=spec.epochs,
        learning_rate=spec.learning_rate,
        num_warmup_updates=spec.num_warmup_updates,
        save_per_updates=spec.save_per_updates,
        keep_last_n_checkpoints=spec.keep_last_n_checkpoints,
        checkpoint_path=str(spec.checkpoint_dir),
        batch_size_per_gpu=spec.batch_size_per_gpu,
        batch_size_type=spec.batch_size_type,
        max_samples=spec.max_samples,
        grad_accumulation_steps=spec.grad_accumulation_steps,
        max_grad_norm=spec.max_grad_norm,
        logger=None,
        log_samples=False,  # True would download the vocos vocoder from the HF hub
        last_per_updates=spec.last_per_updates,
        mel_spec_type=MEL_SPEC["mel_spec_type"],
        accelerate_kwargs={"mixed_precision": spec.mixed_precision},
        bnb_optimizer=spec.bnb_optimizer,
    )
    return trainer, sum(p.numel() for p in model.parameters())


def build_dataset(spec: TrainSpec) -> Any:
    """What f5_tts.model.dataset.load_dataset(path, dataset_type="CustomDatasetPath") means to build;
    that branch raises UnboundLocalError in 1.1.22, so build it directly."""
    raw = ArrowDataset.from_file(str(spec.dataset_dir / "raw.arrow"))
    with (spec.dataset_dir / "duration.json").open(encoding="utf-8") as handle:
        durations = json.load(handle)["duration"]
    mel = {k: v for k, v in MEL_SPEC.items() if k != "n_mel_channels"}
    return CustomDataset(
        raw, durations=durations, preprocessed_mel=False, n_mel_channels=MEL_SPEC["n_mel_channels"], **mel
    )
