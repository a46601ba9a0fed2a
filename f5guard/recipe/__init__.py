"""The F5-TTS Vietnamese recipe: one entry module per stage, run by the daemon as ``python -m
f5guard.recipe.<stage> ...``. Their argv fully determines their output (it is the stage's fingerprint); outputs
live on home and are published atomically, a manifest written last. This package import stays torch-free."""
