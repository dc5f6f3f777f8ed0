"""The citizens' privacy mode as central knows it: from the units' ``privacy`` events.

A citizen says "I have visitors" or "I am away" on the TV (or with the nightcam's button); the
unit blocks its camera for a while and reports the start and the end as ``privacy`` events
(:mod:`vaka.agent.privacy_mode`). :meth:`PrivacyModes.on_event_record`, an ingest hook, keeps
the mode per unit in the ``privacy_modes`` table and appends ``privacy_mode_started`` and
``privacy_mode_ended`` to the audit trail. Times are central's: the mode runs from when central
received the start for as long as the unit said; an end (by the citizen, or the unit's timer)
closes it earlier, and without one it simply lapses.

While a mode runs, central refuses night checks and video visits to the unit with the reason
("the citizen has visitors until 23:40", code ``privacy_visitors`` / ``privacy_away``); the unit
refuses them too. Blocking: call from a worker thread.
"""

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Engine

from vaka.central.audit.trail import AuditLog
from vaka.central.fleet.store import EventRecord
from vaka.central.storage.engine import upsert
from vaka.central.storage.tables import privacy_modes
from vaka.protocol.reasons import Reason

log = logging.getLogger(__name__)

#: What a privacy mode blocks (the unit's own list is the same).
BLOCKED_PURPOSES = frozenset({"night_check", "video_visit"})
MODES = {"visitors": "has visitors", "away": "is away"}
#: The longest mode central believes a unit (a day: anything longer is a fault).
MAX_LENGTH_S = 24 * 3600.0


@dataclass(frozen=True)
class ActiveMode:
    """A privacy mode that runs now (central's times)."""

    unit: str
    mode: str
    since: float
    until: float

    def reason(self, timezone: str) -> Reason:
        """ "the citizen has visitors until 23:40", with its code for the console."""
        until = dt.datetime.fromtimestamp(self.until, ZoneInfo(timezone)).strftime("%H:%M")
        text = f"the citizen {MODES.get(self.mode, 'asked for privacy')} until {until}"
        return Reason(text, f"privacy_{self.mode}", until=until)

    def view(self, timezone: str) -> dict[str, Any]:
        """The JSON shape beside a unit (the night round)."""
        reason = self.reason(timezone)
        return {
            "mode": self.mode,
            "since": self.since,
            "until": self.until,
            "until_text": reason.params["until"],
            "reason": str(reason),
            "reason_code": reason.code,
            "params": reason.params,
        }


class PrivacyModes:
    """The ``privacy_modes`` table, fed by the units' events."""

    def __init__(self, engine: Engine, audit: AuditLog, timezone: str) -> None:
        self.engine = engine
        self.audit = audit
        self.timezone = timezone

    def on_event_record(self, record: EventRecord) -> None:
        """An ingest hook: record a unit's ``privacy`` event (each one once)."""
        if record.kind != "privacy":
            return
        d = record.detail
        action, mode = d.get("action"), d.get("mode")
        since, until = d.get("since"), d.get("until")
        numbers = isinstance(since, int | float) and isinstance(until, int | float)
        if action not in ("started", "ended") or mode not in MODES or not numbers:
            log.warning("unit %s sent a privacy event that says nothing: %s", record.device_id, d)
            return
        assert isinstance(since, int | float) and isinstance(until, int | float)
        length = min(max(0.0, float(until) - float(since)), MAX_LENGTH_S)
        if action == "started":
            self._started(record, str(mode), length)
        else:
            self._ended(record, str(mode), str(d.get("reason") or "ended"))

    def _started(self, record: EventRecord, mode: str, length: float) -> None:
        since = record.received_at
        values = {"mode": mode, "since": since, "until": since + length, "ended_at": None}
        with self.engine.begin() as conn:
            conn.execute(
                upsert(self.engine, privacy_modes)
                .values(device_id=record.device_id, **values)
                .on_conflict_do_update(index_elements=["device_id"], set_=values)
            )
        active = ActiveMode(record.device_id, mode, since, since + length)
        self.audit.append(
            "privacy_mode_started",
            unit=record.device_id,
            ts=since,
            mode=mode,
            until=active.until,
            reason=str(active.reason(self.timezone)),
        )

    def _ended(self, record: EventRecord, mode: str, why: str) -> None:
        now = record.received_at
        with self.engine.begin() as conn:
            conn.execute(
                privacy_modes.update()
                .where(
                    privacy_modes.c.device_id == record.device_id,
                    privacy_modes.c.ended_at.is_(None),
                )
                .values(ended_at=now)
            )
        self.audit.append(
            "privacy_mode_ended", unit=record.device_id, ts=now, mode=mode, reason=why[:200]
        )

    def active(self, unit: str, now: float) -> ActiveMode | None:
        """The mode running on ``unit`` at ``now``, if any."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(privacy_modes).where(privacy_modes.c.device_id == unit))
                .mappings()
                .first()
            )
        if row is None or row["ended_at"] is not None or not row["since"] <= now < row["until"]:
            return None
        return ActiveMode(unit, row["mode"], row["since"], row["until"])

    def refusal(self, unit: str, purpose: str, now: float) -> Reason | None:
        """Why a ``purpose`` call to ``unit`` is refused now, or ``None``."""
        if purpose not in BLOCKED_PURPOSES:
            return None
        active = self.active(unit, now)
        return None if active is None else active.reason(self.timezone)
