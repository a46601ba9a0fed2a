"""f5guard: a detached supervisor for F5-TTS fine-tuning that survives Colab disconnects and recycled VMs."""

__version__ = "0.1.0"
