"""Video visits: the TV units a staff member may visit (``GET /api/visits``, served by
:mod:`vaka.central.http.visits`).

A unit is listed when it is assigned to a citizen who permits ``video_visit`` (direction
``to_unit``) to one of the caller's groups, and its profile is ``tv`` — from the assignment, else
from what the unit itself reported. A unit whose profile nobody knows yet (listed in the directory,
never connected) is listed too, with ``profile: null``; units of another profile are not. Each
entry carries the unit's status as the fleet derives it, so the console can say whether a call
can reach it. The call itself goes through the
call WebSocket (:mod:`vaka.central.calls.relay`), which checks the permission matrix again.
"""

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from vaka.central.directory.directory import Directory
from vaka.central.directory.policy import ROLE_PURPOSES
from vaka.central.fleet.status import NEVER_CONNECTED, derive_status
from vaka.central.fleet.store import FleetStore
from vaka.central.settings.fleet import Thresholds
from vaka.central.storage.tables import assignments, memberships, permissions
from vaka.protocol.reasons import code_of

#: Roles that may make video visits (and so see this list).
VISIT_ROLES = frozenset(r for r, purposes in ROLE_PURPOSES.items() if "video_visit" in purposes)


@dataclass(frozen=True)
class VisitTarget:
    """A TV unit the caller may visit, and through which of their groups."""

    unit: str
    citizen: str
    groups: tuple[str, ...]
    profile: str | None  # from the assignment; ``None`` if the assignment does not say


def visit_targets(directory: Directory, staff_id: str) -> list[VisitTarget]:
    """Units whose citizen permits ``video_visit`` to one of ``staff_id``'s groups (any
    profile; :func:`visits` keeps the TVs). Blocking."""
    query = (
        select(
            assignments.c.device_id,
            assignments.c.citizen_id,
            assignments.c.profile,
            permissions.c.group_id,
        )
        .join(permissions, permissions.c.citizen_id == assignments.c.citizen_id)
        .join(memberships, memberships.c.group_id == permissions.c.group_id)
        .where(
            memberships.c.staff_id == staff_id,
            permissions.c.purpose == "video_visit",
            permissions.c.direction == "to_unit",
        )
        .order_by(assignments.c.citizen_id, assignments.c.device_id, permissions.c.group_id)
    )
    with directory.engine.connect() as conn:
        rows = conn.execute(query).all()
    found: dict[str, VisitTarget] = {}
    for unit, citizen, profile, group in rows:
        known = found.get(unit)
        groups = (*known.groups, group) if known else (group,)
        found[unit] = VisitTarget(unit, citizen, groups, profile)
    return list(found.values())


def visits(
    directory: Directory,
    store: FleetStore,
    thresholds: Thresholds,
    staff_id: str,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """The JSON entries of ``GET /api/visits`` for ``staff_id``. Blocking."""
    at = time.time() if now is None else now
    entries = []
    for target in visit_targets(directory, staff_id):
        record = store.unit(target.unit)
        profile = target.profile or (record.profile if record is not None else None)
        if profile is not None and profile != "tv":
            continue
        reasons: list[str]
        if record is None:
            status, reasons, last_seen = "offline", [NEVER_CONNECTED], None
        else:
            derived = derive_status(record, at, thresholds)
            status, reasons, last_seen = derived.status, derived.reasons, record.last_seen
        entries.append(
            {
                "unit": target.unit,
                "citizen": target.citizen,
                "groups": list(target.groups),
                "profile": profile,
                "status": status,
                "online": status != "offline",
                "reasons": reasons,
                "reason_codes": [code_of(r) for r in reasons],
                "last_seen": last_seen,
            }
        )
    return entries
