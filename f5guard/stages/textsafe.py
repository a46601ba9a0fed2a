"""Text from a stage's output, made safe to print on a terminal or a notebook cell.

A stage may print anything: colour codes, cursor moves, OSC title and hyperlink sequences, a terminal reset, a
bell, raw control bytes. Written to a log and echoed by ``tail`` or ``status`` they would act on the reader's
terminal instead of being read. Escape sequences are dropped; other control characters (tabs kept) are shown
as ``\\xNN``. Stdlib only.
"""

from __future__ import annotations

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other two-byte escapes, then lone control characters.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -~]?|\x9b[0-?]*[ -/]*[@-~]?")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` without terminal escape sequences, its other control characters spelled out."""
    if text.isprintable():
        return text
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", _ESCAPES.sub("", text))
