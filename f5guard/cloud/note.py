"""What status says about the cloud: the typed note a training record carries (``CloudNote``), and its words.

Built by ``checkpoints/uploads.py`` (the daemon's view, with the measured rate) and again live by
``status/cloud.py`` from the store's evidence, so a status with no daemon still tells what reached the cloud.
"""

from __future__ import annotations

import time

from f5guard.state import CloudNote

OVERDUE_S = 600.0  # beyond twice the expected time plus this, an upload is called overdue


def clock(at: float) -> str:
    return time.strftime("%H:%M", time.localtime(at))


def minutes(seconds: float) -> str:
    """ "12 min", "1 h 05 min", "<1 min": how long an upload has run or has left."""
    if seconds < 60:
        return "<1 min"
    whole = int(seconds // 60)
    return f"{whole} min" if whole < 60 else f"{whole // 60} h {whole % 60:02d} min"


def _where(note: CloudNote) -> str:
    return "Drive" if note["kind"] == "drive" else "home"


def in_cloud_words(note: CloudNote) -> str:
    """e.g. "u3000 (confirmed 21:10)", "u3000 (estimated 21:10)"."""
    how = "estimated" if note["confirmed_estimated"] else "confirmed"
    at = note["confirmed_at"]
    return f"u{note['confirmed_update']} ({how}{' ' + clock(at) if at else ''})"


def uploading_words(note: CloudNote, now: float) -> str:
    """e.g. "u4000 (12 min so far, ~2.1 MB/s, ~30 min left)"."""
    since, size, rate = note["uploading_since"], note["uploading_bytes"], note["rate_bytes_per_s"]
    parts = [] if since is None else [f"{minutes(max(0.0, now - since))} so far"]
    if rate:
        parts.append(f"~{rate / 1e6:.1f} MB/s{'' if note['rate_measured'] else ' presumed'}")
        expected = size / rate if size else None
        if expected is not None and since is not None and (left := expected - (now - since)) > 0:
            parts.append(f"{'' if left < 60 else '~'}{minutes(left)} left")
        elif expected is not None and since is not None and now - since > 2 * expected + OVERDUE_S:
            parts.append("overdue: Drive may have stalled (colabtools#2869); `f5guard doctor` times an upload")
    return f"u{note['uploading_update']}" + (f" ({', '.join(parts)})" if parts else "")


def lines(note: CloudNote, now: float) -> list[str]:
    """Status lines: the newest checkpoint in the cloud, the one uploading, pacing, and a checkpoint lost with
    a VM. None for a plain disk (home is the store: status's "safe on home" line says it all)."""
    if note["kind"] == "local":
        return [note["lost"]["line"]] if note["lost"] else []
    out = []
    if note["confirmed_update"] is not None:
        out.append(f"newest in the cloud: {in_cloud_words(note)}")
    else:
        out.append("nothing in the cloud yet")
    if note["uploading_update"] is not None:
        out.append(f"on {_where(note)}, uploading: {uploading_words(note, now)}")
    if note["held_back"] is not None:
        out.append(f"u{note['held_back']} waits on this VM until that upload is done (one upload at a time)")
    if note["kind"] == "writeback" or note["confirmed_estimated"]:
        out.append(f"estimated: {note['how']}")
    if note["lost"]:
        out.append(note["lost"]["line"])
    return out


def final_line(note: CloudNote | None, final: int | None, on_home: int | None, now: float) -> str:
    """Whether the final checkpoint (``final``, the newest local one) reached the cloud: said at the end of
    training and on `f5guard stop`; ``on_home`` is the newest durable checkpoint on home."""
    if final is None:
        return "no checkpoint was saved"
    head = f"the final checkpoint u{final}"
    if on_home is None or on_home < final:
        newest = "" if note is None or note["confirmed_update"] is None else f"; the cloud holds {in_cloud_words(note)}"
        return f"{head} is only on this VM, not on home{newest}"
    if note is None or note["kind"] == "local":
        return f"{head} is safe on home"
    if note["confirmed_update"] is not None and note["confirmed_update"] >= final:
        return f"{head} is in the cloud: {in_cloud_words(note)}"
    held = "" if note["confirmed_update"] is None else f"; the cloud holds {in_cloud_words(note)}"
    uploading = uploading_words(note, now) if note["uploading_update"] is not None else f"u{final}"
    return (
        f"{head} is on {_where(note)}, still uploading: {uploading}{held}. Keep this runtime until it is in the "
        "cloud (`f5guard stop --wait-upload` waits; `f5guard status` shows it), or it is lost with the VM"
    )
