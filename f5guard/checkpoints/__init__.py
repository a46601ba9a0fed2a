"""The checkpoints room, torch-free: inspect, prepare a resume, watch, copy, publish on home and restore.

``from f5guard import checkpoints`` gives the judge-and-resume API (``inspect`` and ``resume``, stdlib only);
the sync, the durable copies on home and the watcher come from their own modules, so that importing one
checkpoint module (the trainer process does) does not pull in watchdog and the sync.
"""

from f5guard.checkpoints.inspect import (
    LAST_NAME,
    CheckpointInfo,
    CheckpointInvalid,
    Quarantined,
    Scan,
    classify,
    inspect_checkpoint,
    quarantine,
    scan_dir,
)
from f5guard.checkpoints.resume import ResumePlan, f5tts_pick, place_pretrained, prepare_resume

__all__ = [
    "LAST_NAME",
    "CheckpointInfo",
    "CheckpointInvalid",
    "Quarantined",
    "ResumePlan",
    "Scan",
    "classify",
    "f5tts_pick",
    "inspect_checkpoint",
    "place_pretrained",
    "prepare_resume",
    "quarantine",
    "scan_dir",
]
