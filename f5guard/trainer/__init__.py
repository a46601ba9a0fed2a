"""The built-in F5-TTS training entry (``python -m f5guard.trainer --spec SPEC.json``).

Importing this package stays torch-free: the daemon builds and validates specs and reads progress here;
only ``__main__``, ``build``, ``verify`` and ``tinydata`` import the training stack.
"""

from f5guard.trainer.spec import SpecError, TrainSpec

__all__ = ["SpecError", "TrainSpec"]
