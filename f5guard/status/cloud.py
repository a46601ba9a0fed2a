"""What of home reached the cloud, for status: the record's note (the measured rate, pacing, a checkpoint lost
with a VM) brought up to date with the store's evidence now, so a status with no daemon tells the truth too:
an upload may have finished, or been lost with its VM, since the record was written."""

from __future__ import annotations

from f5guard.checkpoints.durable import list_durable
from f5guard.checkpoints.uploads import describe, look
from f5guard.cloud.detect import open_configured
from f5guard.cloud.evidence import Store
from f5guard.layout import HomeLayout
from f5guard.machine import hostname
from f5guard.schema import Config, RunConfig
from f5guard.state import CloudNote


def home_store(config: Config, *, thorough: bool = True) -> Store:
    """The store the daemon judges this config's home by (``[store]``, cloud/detect.py); ``thorough=False``: a
    bucket's large files are judged by size (status reads no 5 GB file to checksum it)."""
    return open_configured(config.home, config.store, delay_s=config.lease.retention_delay_s, thorough=thorough)


def cloud_note(config: Config, run: RunConfig, recorded: CloudNote | None, *, supervised: bool) -> CloudNote:
    """``run``'s checkpoints against the cloud now; ``recorded`` is what its daemon last wrote (None: none)."""
    store = home_store(config, thorough=False)
    try:
        standings = look(store, list_durable(HomeLayout(config.home).checkpoints(run.name)))
    except OSError:  # home does not answer now (Errno 107): what the daemon last knew (status shows the problem)
        if recorded is not None:
            return recorded
        standings = []
    if recorded is not None and recorded.get("rate_measured"):
        rate, measured = recorded.get("rate_bytes_per_s"), True
    else:
        rate, measured = store.presumed_bytes_per_s, False
    mine = recorded is not None and supervised and recorded.get("host") == hostname()  # not an inherited note
    held_back = recorded.get("held_back") if recorded is not None and mine else None
    note = describe(store, standings, rate=rate, measured=measured, held_back=held_back)
    note["lost"] = recorded.get("lost") if recorded is not None else None
    return note
