"""Deriving each unit's status for the support function: online, degraded (with reasons), offline.

Status is computed from what the registry holds every time it is asked, never stored, so it is
never stale and any central instance derives the same answer (STYLE rule 11).
"""

from dataclasses import dataclass, field
from typing import Any, Literal

from vaka.central.fleet.lifecycle import LifecycleRecord
from vaka.central.fleet.store import UnitRecord
from vaka.central.settings.fleet import Thresholds
from vaka.protocol.reasons import Reason, code_of

Status = Literal["online", "degraded", "offline"]

#: Why an enrolled unit that never connected is offline.
NOT_CONNECTED_YET = Reason("not connected yet", "not_connected_yet")
#: Why a unit central has never heard from is offline (the night round, visits and alerts).
NEVER_CONNECTED = Reason("never connected to central", "never_connected")
AGENT_STOPPED = Reason("agent stopped", "agent_stopped")
CONNECTION_LOST = Reason("connection lost", "connection_lost")


@dataclass(frozen=True)
class UnitStatus:
    """A unit's derived status."""

    status: Status
    since: float
    #: English texts; each a :class:`Reason` with its code where central made it
    reasons: list[str] = field(default_factory=list)


def _health_reasons(profile: str | None, h: dict[str, Any], t: Thresholds, now: float) -> list[str]:
    reasons: list[str] = []
    temp = h.get("cpu_temp_c")
    if temp is not None and temp >= t.cpu_temp_c:
        reasons.append(
            Reason(
                f"CPU temperature {temp:.0f} °C (limit {t.cpu_temp_c:.0f} °C)",
                "cpu_hot",
                temp=round(temp),
                limit=round(t.cpu_temp_c),
            )
        )
    if (h.get("mem_used_pct") or 0) >= t.mem_used_pct:
        used = round(h["mem_used_pct"])
        reasons.append(Reason(f"memory {h['mem_used_pct']:.0f} % used", "memory_high", pct=used))
    if h.get("camera_present") is False:
        reasons.append(Reason("camera not detected", "camera_missing"))
    if h.get("sound_present") is False:
        reasons.append(Reason("no microphone or speakerphone", "sound_missing"))
    if h.get("shutter") == "fault":
        reasons.append(Reason("privacy shutter fault", "shutter_fault"))
    if profile == "tv" and h.get("tv") == "absent":
        reasons.append(Reason("TV not detected (HDMI/CEC)", "tv_missing"))
    if h.get("clock_synced") is False:
        reasons.append(Reason("clock not synchronised", "clock_unsynced"))
    expires = h.get("cert_expires_at")
    if expires is not None:
        left_h = (expires - now) / 3600
        if left_h <= 0:
            reasons.append(Reason("certificate expired", "cert_expired"))
        elif left_h < t.cert_expiry_warning_h:
            reasons.append(
                Reason(
                    f"certificate expires in {left_h:.0f} h", "cert_expiring", hours=round(left_h)
                )
            )
    rtt = h.get("broker_rtt_ms")
    if rtt is not None and rtt >= t.broker_rtt_ms:
        reasons.append(
            Reason(f"slow link to broker ({rtt:.0f} ms round trip)", "slow_broker", ms=round(rtt))
        )
    link = h.get("link") or {}
    quality = link.get("quality_pct")
    if quality is not None and quality < t.link_quality_pct:
        reasons.append(
            Reason(f"weak Wi-Fi signal ({quality:.0f} %)", "weak_wifi", pct=round(quality))
        )
    return reasons


def derive_status(unit: UnitRecord, now: float, thresholds: Thresholds) -> UnitStatus:
    """The status of ``unit`` at time ``now``."""
    presence = unit.presence
    if presence.status == "stopped":
        return UnitStatus("offline", unit.status_since, [AGENT_STOPPED])
    if presence.status == "offline":
        return UnitStatus("offline", unit.status_since, [CONNECTION_LOST])
    reasons: list[str] = []
    h = unit.health
    if h is None or unit.health_received_at is None:
        if now - unit.status_since > 90:
            reasons.append(Reason("no health report received", "no_health_report"))
    else:
        overdue = h.get("interval_s", 30) * thresholds.health_overdue_factor
        age = now - unit.health_received_at
        if age > overdue:
            reasons.append(
                Reason(
                    f"health report overdue (last {age:.0f} s ago)",
                    "health_overdue",
                    seconds=round(age),
                )
            )
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
        "reason_codes": [code_of(r) for r in status.reasons],
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
        "reasons": [NOT_CONNECTED_YET],
        "reason_codes": [NOT_CONNECTED_YET.coded()],
        "last_seen": None,
        "bdseq": None,
        "health": None,
        "health_received_at": None,
    }
