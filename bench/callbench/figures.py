"""Call set-up samples and their statistics (ms)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .common import PHASES


def summarise(values: Sequence[float]) -> dict[str, Any]:
    """``samples``, ``median``, ``p95`` (linear interpolation), ``min`` and ``max``, in ms."""
    if not values:
        return {"samples": 0, "median": None, "p95": None, "min": None, "max": None}
    ordered = sorted(values)
    p95 = (
        statistics.quantiles(ordered, n=20, method="inclusive")[18]
        if len(ordered) > 1
        else ordered[0]
    )
    return {
        "samples": len(ordered),
        "median": round(statistics.median(ordered), 1),
        "p95": round(p95, 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
    }


@dataclass
class SetupSample:
    """One call set-up, each step in ms from the start (dial request or ``createOffer``)."""

    offer_ready: float
    answered: float
    connected: float | None
    first_frame: float

    @classmethod
    def from_marks(
        cls, started: float, offer_ready: float, answered: float, connected: float, first: float
    ) -> SetupSample:
        """From ``time.perf_counter`` marks (``connected`` 0 if never seen)."""

        def ms(mark: float) -> float:
            return (mark - started) * 1000

        return cls(ms(offer_ready), ms(answered), ms(connected) if connected else None, ms(first))

    def phases(self) -> dict[str, float | None]:
        """Where the time went: gathering, ticket + signalling, ICE + DTLS, first keyframe."""
        return {
            "gather": self.offer_ready,
            "signalling": self.answered - self.offer_ready,
            "ice_dtls": None if self.connected is None else self.connected - self.answered,
            "first_keyframe": None if self.connected is None else self.first_frame - self.connected,
        }


def summarise_setups(
    samples: Sequence[SetupSample], failures: Sequence[str] = ()
) -> dict[str, Any]:
    """Total (to first frame) statistics plus the median of each phase."""
    phases: dict[str, float | None] = {}
    for name in PHASES:
        values = [v for s in samples if (v := s.phases()[name]) is not None]
        phases[name] = round(statistics.median(values), 1) if values else None
    return {
        "total_ms": summarise([s.first_frame for s in samples]),
        "phases_median_ms": phases,
        "failures": len(failures),
        "failure_reasons": list(failures),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` rounded, or ``None`` when either is missing or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def median_total(summary: dict[str, Any]) -> float | None:
    """The median set-up time of a :func:`summarise_setups` result."""
    value = summary["total_ms"]["median"]
    return None if value is None else float(value)
