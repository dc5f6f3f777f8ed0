"""A unit's standing: the lifecycle changes central and technicians make, each audited, and what
they close.

The state and its rules are :mod:`vaka.central.fleet.lifecycle`'s; this module makes the changes
as steps of a unit's life: an approved enrolment makes it *enrolling*, its first connection
*active*; a technician *suspends* and *resumes* it; the provisioner *revokes* and *decommissions*
it. Entering a quiet state (suspended, revoked, decommissioned) closes the unit's open alerts
with that reason, through the alert watch's ``close_for_unit`` handed in by the service (the
alerts room is a sibling, not a dependency).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vaka.central.audit.trail import AuditLog
from vaka.central.fleet.lifecycle import (
    QUIET,
    Lifecycle,
    LifecycleRecord,
    LifecycleStore,
    check_move,
)
from vaka.central.storage.background import Bookkeeping, Gathered

log = logging.getLogger(__name__)

#: ``await close_alerts(unit, reason, actor)``: close the unit's open alerts; how many
CloseAlerts = Callable[[str, str, str | None], Awaitable[int]]


class UnitStanding:
    """Lifecycle changes with their audit entries and the alerts they close."""

    def __init__(
        self,
        store: LifecycleStore,
        audit: AuditLog,
        close_alerts: CloseAlerts,
        bookkeeping: Bookkeeping | None = None,
    ) -> None:
        self.store = store
        self.audit = audit
        self.close_alerts = close_alerts
        #: where a unit's coming online is written (not the default executor: see there)
        self.bookkeeping = bookkeeping or Bookkeeping()
        #: the units that came online, marked active in one statement per batch
        self._activated = Gathered(self.bookkeeping, self.store.activate_many, False)
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, unit: str) -> LifecycleRecord:
        """The unit's lifecycle state."""
        return await asyncio.to_thread(self.store.get, unit)

    async def check(self, unit: str, new: Lifecycle) -> None:
        """Refuse now (:class:`~vaka.central.fleet.lifecycle.LifecycleRefused`) a change that
        would be refused after the irreversible steps before it (revoking certificates)."""
        check_move(unit, (await self.get(unit)).state, new)

    async def move(
        self,
        unit: str,
        new: Lifecycle,
        actor: str | None,
        reason: str,
        only_from: frozenset[Lifecycle] | None = None,
    ) -> dict[str, Any]:
        """Change the unit's state and close its alerts if it is now quiet; the change as the
        API shows it (``changed`` is false when another writer made a change first)."""
        old = await asyncio.to_thread(
            self.store.move, unit, new, actor=actor, reason=reason, only_from=only_from
        )
        closed = 0
        if new in QUIET:
            closed = await self.close_alerts(unit, f"unit {new.value}: {reason}", actor)
        if old is not None:
            log.info("unit %s: %s -> %s (%s)", unit, old.state.value, new.value, reason)
        return {
            "unit": unit,
            "lifecycle": new.value,
            "was": None if old is None else old.state.value,
            "changed": old is not None,
            "alerts_closed": closed,
        }

    async def suspend(self, unit: str, actor: str, reason: str) -> dict[str, Any]:
        """Take the unit out of service for a while (a hospital stay): no alerts; audited."""
        result = await self.move(
            unit,
            Lifecycle.SUSPENDED,
            actor,
            reason,
            only_from=frozenset({Lifecycle.ACTIVE, Lifecycle.ENROLLING}),
        )
        if result["changed"]:
            await asyncio.to_thread(
                self.audit.append, "unit_suspended", actor=actor, unit=unit, reason=reason
            )
        return result

    async def resume(self, unit: str, actor: str, reason: str) -> dict[str, Any]:
        """Put a suspended unit back in service; audited."""
        result = await self.move(
            unit, Lifecycle.ACTIVE, actor, reason, only_from=frozenset({Lifecycle.SUSPENDED})
        )
        if result["changed"]:
            await asyncio.to_thread(
                self.audit.append, "unit_resumed", actor=actor, unit=unit, reason=reason
            )
        return result

    def on_unit_online(self, unit: str) -> None:
        """A unit said it is online (an ingest hook, on the event loop): an enrolling unit
        becomes active."""
        task = asyncio.get_running_loop().create_task(self._activate(unit))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _activate(self, unit: str) -> None:
        try:
            if await self._activated(unit):
                log.info("unit %s: enrolling -> active (first connection)", unit)
                await self.bookkeeping.run(self.audit.append, "unit_activated", unit=unit)
        except Exception:  # a database hiccup: the next birth tries again
            log.exception("could not mark unit %s active", unit)
