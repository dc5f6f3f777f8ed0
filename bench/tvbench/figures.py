"""Pure helpers of the TV call benchmark: statistics, the unit's events and log, CPU samples.

Nothing here starts a process or touches the network, so the test suite can run it directly.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


def stats(values: Sequence[float], digits: int = 1) -> dict[str, Any]:
    """``samples``, ``median``, ``min``, ``max`` and ``p90`` (nearest rank) of ``values``.

    Empty input gives ``samples`` 0 and ``None`` for the rest.
    """
    if not values:
        return {"samples": 0, "median": None, "min": None, "max": None, "p90": None}
    ordered = sorted(values)
    return {
        "samples": len(ordered),
        "median": round(statistics.median(ordered), digits),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
        "p90": round(percentile(ordered, 90), digits),
    }


def percentile(ordered: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of sorted ``ordered`` (``pct`` in 0-100, not empty).

    With ten samples p90 is the ninth smallest; with three it is the largest.
    """
    if not ordered:
        raise ValueError("percentile of no samples")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is not within 0-100")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


class EventLike(Protocol):
    """What :func:`picture_shown` reads of an event (central's ``EventRecord``)."""

    @property
    def kind(self) -> str: ...

    @property
    def detail(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class PictureShown:
    """The unit's word that the caller's first frame was put on the TV screen."""

    call_id: str
    at: float
    """Wall-clock time (``time.time()`` on the unit)."""
    after_answer_ms: float | None
    """From the unit's answer to the picture, by the unit's own clock."""


def picture_shown(events: Iterable[EventLike], call_id: str) -> PictureShown | None:
    """The ``picture_shown`` call event of ``call_id`` among ``events``, or ``None``.

    Events of other kinds, other calls, or with an unreadable ``at`` are passed over.
    """
    for event in events:
        detail = event.detail
        if event.kind != "call" or detail.get("action") != "picture_shown":
            continue
        if detail.get("call_id") != call_id:
            continue
        at = detail.get("at")
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            continue
        after = detail.get("after_answer_ms")
        after_ms = (
            float(after) if isinstance(after, int | float) and not isinstance(after, bool) else None
        )
        return PictureShown(call_id, float(at), after_ms)
    return None


_REMOTE_ENDED = re.compile(r"remote video ended after (\d+) frames")


def remote_frames_from_log(text: str) -> int | None:
    """Frames the unit received in its last call, from the agent's log line
    ``remote video ended after N frames``; ``None`` if the log has no such line."""
    found = _REMOTE_ENDED.findall(text)
    return int(found[-1]) if found else None


@dataclass(frozen=True)
class ProcessSample:
    """One reading of a process: CPU time used so far and resident memory."""

    wall: float
    """``time.monotonic()`` of the reading."""
    cpu_s: float
    """User + system CPU seconds of every thread so far."""
    rss_mb: float


def cpu_percents(samples: Sequence[ProcessSample]) -> list[float]:
    """CPU between successive readings, in % of one core (100 = one core busy)."""
    out: list[float] = []
    for before, after in itertools.pairwise(samples):
        elapsed = after.wall - before.wall
        if elapsed > 0:
            out.append(100 * (after.cpu_s - before.cpu_s) / elapsed)
    return out


def process_figures(samples: Sequence[ProcessSample]) -> dict[str, Any]:
    """CPU (% of one core: mean over the whole span, and per-interval statistics) and RSS (MB)."""
    if len(samples) < 2:
        return {"cpu_pct_of_one_core": None, "cpu_pct_per_s": stats([]), "rss_mb": stats([])}
    span = samples[-1].wall - samples[0].wall
    mean = 100 * (samples[-1].cpu_s - samples[0].cpu_s) / span if span > 0 else None
    return {
        "cpu_pct_of_one_core": None if mean is None else round(mean, 1),
        "cpu_pct_per_s": stats(cpu_percents(samples)),
        "rss_mb": {**stats([s.rss_mb for s in samples]), "end": round(samples[-1].rss_mb, 1)},
        "seconds": round(span, 1),
    }


def rate(count: int, seconds: float) -> float | None:
    """``count / seconds`` rounded, ``None`` for an empty span."""
    return None if seconds <= 0 else round(count / seconds, 1)


def readable(result: Mapping[str, Any]) -> str:
    """One line for people."""
    shown = result["calls"]["picture_shown_ms"]
    staff = result["calls"]["staff_first_frame_ms"]
    hold = result["hold"]
    idle, busy = hold["unit_idle"], hold["unit_in_call"]
    return (
        f"TV call to a sleeping unit, n={shown['samples']} (failed {result['calls']['failures']}): "
        f"dial -> picture on the TV median {shown['median']} ms "
        f"(min {shown['min']}, p90 {shown['p90']}, max {shown['max']}); "
        f"staff's first frame median {staff['median']} ms | "
        f"two-way {hold['video']} for {hold['seconds']} s: unit CPU "
        f"{busy['cpu_pct_of_one_core']} % of a core (idle {idle['cpu_pct_of_one_core']}), "
        f"RSS {busy['rss_mb']['median']} MB median, {busy['rss_mb']['max']} max "
        f"(idle {idle['rss_mb']['median']}); staff received {hold['staff_video_fps']} fps "
        f"video, {hold['staff_audio_frames_per_s']} audio frames/s; "
        f"unit received ~{hold['unit_video_fps']} fps"
    )
