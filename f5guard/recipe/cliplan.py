"""From VAD speech regions to training clips: pure arithmetic on seconds, so it is tested without audio.

F5-TTS trains only on clips of 0.3-30 s. A region shorter than the minimum joins a neighbour when the pause
between them is short and the joined clip still fits, else it is dropped; a region longer than the maximum is
cut at the quietest point shortly before the limit (``quietest`` tells where that is), never silently mid-word
at the limit, and every cut is reported with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SEARCH_S = 5.0  # how far before the limit a forced cut looks for a pause
JOIN_GAP_S = 1.0  # a short region joins a neighbour only across a pause this short (no clip of mostly silence)


@dataclass(frozen=True)
class Span:
    """A stretch of a source, in seconds."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Plan:
    """The clips to write, and one human line per forced cut or dropped region."""

    clips: list[Span]
    notes: list[str]


# quietest(lo, hi) -> (time_s, level_db): the quietest point of the source between lo and hi seconds
Quietest = Callable[[float, float], tuple[float, float]]


def plan_clips(regions: list[Span], *, min_clip: float, max_clip: float, quietest: Quietest) -> Plan:
    """Clips within [min_clip, max_clip] from sorted, non-overlapping speech regions."""
    if not 0 < 2 * min_clip <= max_clip:
        raise ValueError(f"need 0 < 2 x min clip <= max clip, got min {min_clip} s, max {max_clip} s")
    notes: list[str] = []
    joined = _join_short(sorted(regions, key=lambda s: s.start), min_clip, max_clip, notes)
    clips: list[Span] = []
    for region in joined:
        clips.extend(_split_long(region, min_clip, max_clip, quietest, notes))
    return Plan(clips, notes)


def _join_short(regions: list[Span], min_clip: float, max_clip: float, notes: list[str]) -> list[Span]:
    out: list[Span] = []
    pending: Span | None = None  # a short region waiting to be joined to the next one
    for found in regions:
        region = found
        if pending is not None:
            if found.end - pending.start <= max_clip and found.start - pending.end <= JOIN_GAP_S:
                region = Span(pending.start, found.end)
            else:
                notes.append(_dropped(pending, min_clip))
            pending = None
        if region.duration >= min_clip:
            out.append(region)
        elif out and region.end - out[-1].start <= max_clip and region.start - out[-1].end <= JOIN_GAP_S:
            out[-1] = Span(out[-1].start, region.end)
        else:
            pending = region
    if pending is not None:
        notes.append(_dropped(pending, min_clip))
    return out


def _dropped(region: Span, min_clip: float) -> str:
    return (
        f"dropped speech {region.start:.2f}-{region.end:.2f} s ({region.duration:.2f} s): shorter than "
        f"--min-clip-s {min_clip:g}, no neighbour within {JOIN_GAP_S:g} s to join it to"
    )


def _split_long(region: Span, min_clip: float, max_clip: float, quietest: Quietest, notes: list[str]) -> list[Span]:
    pieces: list[Span] = []
    start = region.start
    while region.end - start > max_clip:
        limit = start + max_clip
        lo = max(start + min_clip, limit - min(SEARCH_S, max_clip / 3))
        hi = min(limit, region.end - min_clip)
        if lo < hi:
            at, level = quietest(lo, hi)
            at = min(max(at, lo), hi)
            how = f"at the quietest point of the last {limit - lo:.1f} s before the limit ({level:.0f} dBFS)"
        else:
            at, how = limit, "at the limit (no room to look for a pause)"
        notes.append(
            f"cut speech {region.start:.2f}-{region.end:.2f} s ({region.duration:.2f} s, longer than "
            f"--max-clip-s {max_clip:g}) at {at:.2f} s, {how}"
        )
        pieces.append(Span(start, at))
        start = at
    pieces.append(Span(start, region.end))
    return pieces
