"""Who holds the night watch: staff log on and off duty, and say where their ring socket is.

The duty list lives in the database so that every central instance sees the same watch. A staff
member on duty keeps a ring socket open to one instance (``GET /api/duty/ring``); that instance
stamps the row with its identity and refreshes the stamp while the socket lives, so that any
instance can tell how many of the watch can actually be rung.

Only roles that may take citizen calls (``citizen_call`` in
:data:`vaka.central.directory.policy.ROLE_PURPOSES`) may go on duty.
"""

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine

from vaka.central.directory.directory import Directory, StaffMember
from vaka.central.directory.policy import ROLE_PURPOSES
from vaka.central.storage.engine import upsert
from vaka.central.storage.tables import duty, memberships, staff, staff_groups
from vaka.errors import CallError

#: A ring socket whose stamp is older than this is taken for gone (its instance died).
RING_STALE_S = 30.0
#: How often the instance holding a ring socket refreshes its stamp.
RING_REFRESH_S = 10.0


class DutyRefused(CallError, PermissionError):
    """A staff member may not go on duty (or do what needs it); the message says why."""


@dataclass(frozen=True)
class OnDuty:
    """One staff member of the watch, as a ring target."""

    staff_id: str
    name: str
    group: str
    since: float
    ringable: bool  # a ring socket is open on some instance


def may_take_citizen_calls(member: StaffMember) -> bool:
    """Whether the member's role may take citizen calls (and so go on duty)."""
    return "citizen_call" in ROLE_PURPOSES.get(member.role, set())


class DutyRoster:
    """The duty table. Blocking: call from a worker thread."""

    def __init__(self, engine: Engine, directory: Directory) -> None:
        self.engine = engine
        self.directory = directory

    def go_on(self, member: StaffMember, now: float | None = None) -> tuple[float, bool]:
        """Put ``member`` on duty (idempotent): since when they are on duty, and whether they
        just went on."""
        if not may_take_citizen_calls(member):
            raise DutyRefused(
                f"the role {member.role} does not take citizen calls and cannot go on duty"
            )
        if not self.directory.groups_of(member.staff_id):
            raise DutyRefused(f"staff {member.staff_id} is in no staff group")
        at = time.time() if now is None else now
        with self.engine.begin() as conn:
            result = conn.execute(
                upsert(self.engine, duty)
                .values(staff_id=member.staff_id, on_since=at)
                .on_conflict_do_nothing()
            )
        since = self.since(member.staff_id)
        assert since is not None
        return since, bool(result.rowcount)

    def go_off(self, staff_id: str) -> bool:
        """Take ``staff_id`` off duty; whether they were on."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(duty).where(duty.c.staff_id == staff_id))
        return bool(result.rowcount)

    def since(self, staff_id: str) -> float | None:
        """Since when ``staff_id`` is on duty, or ``None``."""
        with self.engine.connect() as conn:
            return conn.execute(select(duty.c.on_since).where(duty.c.staff_id == staff_id)).scalar()

    def watch(self, groups: set[str], now: float | None = None) -> list[OnDuty]:
        """Everyone on duty in any of ``groups`` (one entry per staff member and group)."""
        if not groups:
            return []
        at = time.time() if now is None else now
        query = (
            select(
                duty.c.staff_id,
                staff.c.display_name,
                memberships.c.group_id,
                duty.c.on_since,
                duty.c.ring_seen_at,
            )
            .join(staff, staff.c.staff_id == duty.c.staff_id)
            .join(memberships, memberships.c.staff_id == duty.c.staff_id)
            .where(memberships.c.group_id.in_(sorted(groups)), staff.c.active.is_(True))
            .order_by(memberships.c.group_id, duty.c.on_since)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            OnDuty(r[0], r[1], r[2], r[3], r[4] is not None and at - r[4] < RING_STALE_S)
            for r in rows
        ]

    def group_names(self, groups: set[str]) -> dict[str, str]:
        """Display names of ``groups``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(staff_groups.c.group_id, staff_groups.c.name).where(
                    staff_groups.c.group_id.in_(sorted(groups))
                )
            )
            return {r[0]: r[1] for r in rows}

    def mark_ringable(self, staff_id: str, instance: str, now: float | None = None) -> bool:
        """Stamp the row: ``instance`` holds an open ring socket. ``False`` if not on duty."""
        at = time.time() if now is None else now
        with self.engine.begin() as conn:
            result = conn.execute(
                update(duty)
                .where(duty.c.staff_id == staff_id)
                .values(ring_instance=instance, ring_seen_at=at)
            )
        return bool(result.rowcount)

    def clear_ringable(self, staff_id: str, instance: str) -> None:
        """The ring socket ``instance`` held is closed."""
        with self.engine.begin() as conn:
            conn.execute(
                update(duty)
                .where(duty.c.staff_id == staff_id, duty.c.ring_instance == instance)
                .values(ring_instance=None, ring_seen_at=None)
            )


def duty_status(roster: DutyRoster, member: StaffMember) -> dict[str, Any]:
    """``GET /api/duty``'s answer: am I on duty, and who holds the watch in each of my groups
    (blocking)."""
    groups = roster.directory.groups_of(member.staff_id)
    names = roster.group_names(groups)
    watch: dict[str, list[dict[str, Any]]] = {g: [] for g in sorted(groups)}
    for entry in roster.watch(groups):
        watch[entry.group].append(
            {
                "id": entry.staff_id,
                "name": entry.name,
                "since": entry.since,
                "ringable": entry.ringable,
            }
        )
    since = roster.since(member.staff_id)
    return {
        "me": {
            "id": member.staff_id,
            "name": member.display_name,
            "on": since is not None,
            "since": since,
            "may_go_on_duty": may_take_citizen_calls(member),
        },
        "watch": [
            {"group": g, "name": names.get(g, g), "staff": staff_list}
            for g, staff_list in watch.items()
        ],
    }
