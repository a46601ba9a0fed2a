"""What the ranks of a group decide together at an update boundary: one tiny all-reduce (imports torch).

A stop signal can reach the ranks at different update boundaries, and a timed save is due by each rank's own
clock. F5-TTS's save_checkpoint starts with a barrier and every update with a gradient all-reduce, so ranks
that decide differently wait on different collectives: a hang. An element-wise maximum over the ranks makes
every decision the same everywhere, at the cost of one all-reduce of a few integers per update.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist


def any_rank(flags: Sequence[bool], device: Any) -> list[bool]:
    """Each flag, true if it is true on any rank."""
    return _reduce(flags, device, dist.ReduceOp.MAX)


def every_rank(flags: Sequence[bool], device: Any) -> list[bool]:
    """Each flag, true only if it is true on every rank."""
    return _reduce(flags, device, dist.ReduceOp.MIN)


def _reduce(flags: Sequence[bool], device: Any, op: Any) -> list[bool]:
    values = torch.tensor([1 if flag else 0 for flag in flags], dtype=torch.int32, device=device)
    dist.all_reduce(values, op=op)
    return [bool(v) for v in values.tolist()]
