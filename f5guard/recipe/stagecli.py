"""What every recipe entry shares: one-line errors with exit codes, the device choice, the params signature.

Torch-free: torch is imported only inside ``pick_device``. Exit codes follow the recipe contract: 0 done,
1 failed (one line on stderr, the traceback if any in the stage log on stdout), 2 bad arguments or inputs.
"""

from __future__ import annotations

import hashlib
import json
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from f5guard.errors import F5guardError


class StageFailed(F5guardError, RuntimeError):
    """The stage could not finish; the message names what, the path, and why. Exit 1."""


class BadInput(F5guardError, ValueError):
    """Bad arguments or missing inputs: nothing to retry until the user fixes them. Exit 2."""

    exit_code = 2


def say(line: str) -> None:
    """One human line for the stage log, flushed at once (a killed stage keeps what it said)."""
    print(line, flush=True)


def run_entry(prog: str, body: Callable[[], int]) -> int:
    """Run a stage body, turning every failure into exactly one line on stderr and the contract's exit code."""
    try:
        return body()
    except F5guardError as err:
        print(f"{prog}: {err.message}", file=sys.stderr, flush=True)
        return err.exit_code
    except OSError as err:
        where = f" {err.filename}" if err.filename else ""
        print(f"{prog}: I/O error{where}: {err.strerror or err}", file=sys.stderr, flush=True)
        return 1
    except Exception as err:  # noqa: BLE001 - last resort: the traceback goes to the log, one line to stderr
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
        detail = " ".join(str(err).split())[:300]
        print(f"{prog}: failed: {type(err).__name__}: {detail}", file=sys.stderr, flush=True)
        return 1


def pick_device(choice: str) -> str:
    """``auto`` -> cuda when torch sees a GPU, else cpu; an explicit ``cuda`` without one is a bad argument."""
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda: torch sees no CUDA device here (use --device auto or cpu)")
    return choice


def signature(params: Mapping[str, Any]) -> str:
    """A short stable digest of the parameters an item's result depends on (stored with each ledger record).

    A rerun with other parameters then redoes every item instead of mixing results made two ways.
    """
    text = json.dumps(dict(params), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def one_line(text: str, limit: int = 300) -> str:
    """Collapse a tool's message (often multi-line) to one line for a report."""
    return " ".join(str(text).split())[:limit]
