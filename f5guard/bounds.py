"""What an epoch or an update read from home may be: anything else comes from a corrupt or hostile file.

Home is shared, synced late and edited by people. A claim, state copy, manifest or checkpoint name whose epoch
is 1e308, 2**63, "3" or true is no evidence of anything: it is ignored (and reported where it is read), never
taken as this runtime's epoch floor, or every later start would inherit it (and its own claims carry it on).
"""

from __future__ import annotations

from typing import Any

MAX_EPOCH = 10**9  # one per takeover: a home with a billion takeovers is a corrupt file
MAX_UPDATE = 10**12  # F5-TTS counts optimizer updates: a trillion is no real training


def counted(value: Any, most: int) -> int | None:
    """``value`` when it is a true integer (not a bool, float or string) in 0..``most``; else None."""
    if type(value) is not int or not 0 <= value <= most:
        return None
    return value


def epoch_of(value: Any) -> int | None:
    return counted(value, MAX_EPOCH)


def update_of(value: Any) -> int | None:
    return counted(value, MAX_UPDATE)


def epoch_in_name(digits: str) -> int | None:
    """An epoch spelled in a file name (``state-e0003``, ``ckpt-e0003``): digits only, within bounds."""
    return epoch_of(int(digits)) if digits.isdigit() and len(digits) <= len(str(MAX_EPOCH)) else None
