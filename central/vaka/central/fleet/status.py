"""Deriving each unit's status for the support function: online, degraded (with reasons), offline.

Status is computed from what the registry holds every time it is asked, never stored, so it is
never stale and any central instance derives the same answer (STYLE rule 11).
"""

from dataclasses import dataclass, field
from typing import Any, Literal

from vaka.central.fleet.lifecycle import LifecycleRecord
from vaka.central.fleet.store import UnitRecord
from vaka.central.settings.fleet import Thresholds

Status = Literal["online", "degraded", "offline"]


@dataclass(frozen=True)
class UnitStatus:
    """A unit's derived status."""

    status: Status
    since: float
    reasons: list[str] = field(default_factory=list)


def _health_reasons(profile: str | None, h: dict[str, Any], t: Thresholds, now: float) -> list[str]:
    reasons: list[str] = []
    temp = h.get("cpu_temp_c")
    if temp is not None and temp >= t.cpu_temp_c:
        reasons.append(f"CPU temperature {temp:.0f} °C (limit {t.cpu_temp_c:.0f} °C)")
    if (h.get("mem_used_pct") or 0) >= t.mem_used_pct:
        reasons.append(f"memory {h['mem_used_pct']:.0f} % used")
    if h.get("camera_present") is False:
        reasons.append("camera not detected")
    if h.get("sound_present") is False:
        reasons.append("no microphone or speakerphone")
    if h.get("shutter") == "fault":
        reasons.append("privacy shutter fault")
    if profile == "tv" and h.get("tv") == "absent":
        reasons.append("TV not detected (HDMI/CEC)")
    if h.get("clock_synced") is False:
        reasons.append("clock not synchronised")
    expires = h.get("cert_expires_at")
    if expires is not None:
        left_h = (expires - now) / 3600
        if left_h <= 0:
            reasons.append("certificate expired")
        elif left_h < t.cert_expiry_warning_h:
            reasons.append(f"certificate expires in {left_h:.0f} h")
    rtt = h.get("broker_rtt_ms")
    if rtt is not None and rtt >= t.broker_rtt_ms:
        reasons.append(f"slow link to broker ({rtt:.0f} ms round trip)")
    link = h.get("link") or {}
    quality = link.get("quality_pct")
    if quality is not None and quality < t.link_quality_pct:
        reasons.append(f"weak Wi-Fi signal ({quality:.0f} %)")
    return reasons


def derive_status(unit: UnitRecord, now: float, thresholds: Thresholds) -> UnitStatus:
    """The status of ``unit`` at time ``now``."""
    presence = unit.presence
    if presence.status == "stopped":
        return UnitStatus("offline", unit.status_since, ["agent stopped"])
    if presence.status == "offline":
        return UnitStatus("offline", unit.status_since, ["connection lost"])
    reasons: list[str] = []
    h = unit.health
    if h is None or unit.health_received_at is None:
        if now - unit.status_since > 90:
            reasons.append("no health report received")
    else:
        overdue = h.get("interval_s", 30) * thresholds.health_overdue_factor
        age = now - unit.health_received_at
        if age > overdue:
            reasons.append(f"health report overdue (last {age:.0f} s ago)")
        reasons += _health_reasons(unit.profile, h, thresholds, now)
    if reasons:
        return UnitStatus("degraded", unit.status_since, reasons)
    return UnitStatus("online", unit.status_since)


def unit_view(
    unit: UnitRecord, now: float, thresholds: Thresholds, lifecycle: LifecycleRecord
) -> dict[str, Any]:
    """The JSON shape of one unit in ``GET /api/units``."""
    status = derive_status(unit, now, thresholds)
    return {
        "id": unit.device_id,
        "lifecycle": lifecycle.view(),
        "profile": unit.profile,
        "agent_version": unit.agent_version,
        "status": status.status,
        "since": status.since,
        "reasons": status.reasons,
        "last_seen": unit.last_seen,
        "bdseq": unit.presence.bdseq,
        "health": unit.health,
        "health_received_at": unit.health_received_at,
    }


def unconnected_view(lifecycle: LifecycleRecord) -> dict[str, Any]:
    """The JSON shape of a unit central enrolled that has not connected yet."""
    return {
        "id": lifecycle.unit,
        "lifecycle": lifecycle.view(),
        "profile": None,
        "agent_version": None,
        "status": "offline",
        "since": lifecycle.since,
        "reasons": ["not connected yet"],
        "last_seen": None,
        "bdseq": None,
        "health": None,
        "health_received_at": None,
    }
