"""A unit's health history: the newest sample of each period, for the last few periods.

The ring (table ``health_history``, ``[fleet] health_history_period_s`` and
``health_history_slots``) holds the *past* periods; the current period's newest sample is the
unit's latest health (table ``health``), which is written anyway. So a report does not write
the ring: only when a unit's reports move into a new period is the sample that was newest until
then copied from ``health`` into its period's slot, once per unit and period (one write per
ten reports at the defaults, 30 s reports and 5 min periods, instead of one each).

Several instances may do this for the same unit: each copies what ``health`` holds when it
sees the period change, and the slot keeps the newest copy (a conditional upsert on the
receive time), so the ring converges on the newest sample of each period whichever instance
took which report. What an instance keeps in memory is only the period it last saw per unit;
an instance that restarts checks each unit once against the database.
"""

import json
from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.engine import Connection

from vaka.central.storage.tables import health, health_history


class _Sample(Protocol):
    @property
    def received_at(self) -> float: ...


class HealthRing:
    """Decides when a unit's sample enters the ring, and reads the ring back."""

    def __init__(self, period_s: float, slots: int) -> None:
        self.period_s = period_s
        self.slots = slots
        #: the period of the newest sample this instance wrote per unit (committed)
        self._period: dict[str, int] = {}

    def period(self, at: float) -> int:
        """The period that the time ``at`` falls in."""
        return int(at // self.period_s)

    def rolling(self, newest: Mapping[str, _Sample]) -> list[str]:
        """Units whose stored latest sample may belong to an earlier period than their new one
        (and units this instance has not seen yet)."""
        known = self._period
        return [
            unit
            for unit, sample in newest.items()
            if known.get(unit) != self.period(sample.received_at)
        ]

    def carried_over(
        self, conn: Connection, units: list[str], newest: Mapping[str, _Sample]
    ) -> list[dict[str, Any]]:
        """Ring rows for the stored latest samples of ``units`` whose period has ended (read in
        the writing transaction, before the new samples replace them)."""
        if not units:
            return []
        query = select(health.c.device_id, health.c.sent_at, health.c.received_at, health.c.payload)
        rows = conn.execute(query.where(health.c.device_id.in_(units))).mappings().all()
        return [
            {
                "device_id": r["device_id"],
                "slot": self.period(r["received_at"]) % self.slots,
                "sent_at": r["sent_at"],
                "received_at": r["received_at"],
                "payload": r["payload"],
            }
            for r in rows
            if self.period(r["received_at"]) < self.period(newest[r["device_id"]].received_at)
        ]

    def committed(self, newest: Mapping[str, _Sample]) -> None:
        """Remember the periods of a committed batch's samples."""
        for unit, sample in newest.items():
            self._period[unit] = self.period(sample.received_at)

    def read(self, conn: Connection, device_id: str) -> list[tuple[float, float, Any]]:
        """``(sent_at, received_at, payload)`` of the newest sample of each period within the
        ring's span, newest first: the ring's rows and the latest sample (a slot left from an
        earlier lap of the ring is older than the span and not shown)."""
        ring = conn.execute(
            select(
                health_history.c.sent_at, health_history.c.received_at, health_history.c.payload
            ).where(health_history.c.device_id == device_id)
        ).all()
        latest = conn.execute(
            select(health.c.sent_at, health.c.received_at, health.c.payload).where(
                health.c.device_id == device_id
            )
        ).all()
        best: dict[int, tuple[float, float, str]] = {}
        for sent_at, received_at, payload in [*ring, *latest]:
            p = self.period(received_at)
            if p not in best or received_at >= best[p][1]:
                best[p] = (sent_at, received_at, payload)
        if not best:
            return []
        kept = sorted(best.values(), key=lambda r: r[1], reverse=True)
        oldest = kept[0][1] - self.period_s * self.slots
        return [(s, r, json.loads(p)) for s, r, p in kept if r > oldest]
