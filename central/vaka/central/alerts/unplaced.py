"""The one alert for a unit that reports calls that were never placed.

Central refuses a unit's call and shutter events that its own ticket record does not allow
(:mod:`vaka.central.audit.call_record`); the first refusal of each unit raises this alert. A unit
has at most one open: its "check" is fixed at the epoch, so the alerts table's one-per-unit-and-
check rule keeps it single. The watch leaves it open; staff close it
(``POST /api/alerts/{id}/clear``).
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from vaka.central.alerts.store import FORGED_STATUS, Alert
from vaka.central.alerts.watch import AlertWatch
from vaka.central.fleet.lifecycle import QUIET

log = logging.getLogger(__name__)

FORGED_REASON = "unit reports calls that were never placed"
FORGED_CHECK_AT = 0.0
FORGED_UNTIL = 4_102_444_800.0  # 2100-01-01: it does not lapse by itself


class UnplacedCallAlerts:
    """Raises the alert through the watch's store, audit trail and notifier."""

    def __init__(self, watch: AlertWatch, clock: Callable[[], float] = time.time) -> None:
        self.watch = watch
        self._clock = clock

    async def raise_once(self, unit: str, reason: str) -> None:
        """Raise the alert for ``unit`` unless one is open or the unit is out of service (its
        lifecycle is quiet); audit and notify when raised."""
        watch = self.watch
        now = self._clock()
        if (await asyncio.to_thread(watch.lifecycle.get, unit)).state in QUIET:
            return
        citizen = await asyncio.to_thread(watch.directory.citizen_of, unit)
        candidate = Alert(
            str(uuid.uuid4()),
            unit,
            citizen or "",
            None,
            FORGED_CHECK_AT,
            FORGED_UNTIL,
            FORGED_STATUS,
            [FORGED_REASON, reason[:200]],
            now,
            None,
            None,
        )
        raised = await asyncio.to_thread(watch.store.raise_alert, candidate)
        if raised is None:
            return
        log.warning("ALERT unit %s: %s (%s)", unit, FORGED_REASON, reason)
        detail = {"alert_id": raised.id, "citizen": raised.citizen, "reason": reason[:200]}
        await asyncio.to_thread(
            watch.audit.append, "alert_raised", unit=unit, ts=now, status=FORGED_STATUS, **detail
        )
        await watch.notifier.notify("unit_reports_unplaced_calls", {"unit": unit, **detail})
