"""The citizens' call requests and the escalations, in central's database (any instance may read
and settle them: every change of state is a conditional update, so exactly one instance wins).
Blocking: call from a worker thread."""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from vaka.central.storage.engine import upsert
from vaka.central.storage.tables import citizen_call_requests, escalations
from vaka.protocol.reasons import from_column, to_column, with_code


@dataclass(frozen=True)
class CallRequest:
    """One row of ``citizen_call_requests``."""

    request_id: str
    unit: str
    citizen: str | None
    groups: frozenset[str]
    created_at: float
    state: str
    accepted_by: str | None
    accepted_name: str | None
    reason: str | None
    #: the contact the TV calls (:mod:`vaka.central.calls.tv_calls`); ``None``: the staff
    callee: str | None = None
    #: when a central instance first rang the contact's page
    rung_at: float | None = None


class RequestBook:
    """The request and escalation tables. Blocking: call from a worker thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, request: CallRequest, instance: str) -> bool:
        """Insert the request unless it exists; whether this call created it."""
        with self.engine.begin() as conn:
            result = conn.execute(
                upsert(self.engine, citizen_call_requests)
                .values(
                    request_id=request.request_id,
                    unit=request.unit,
                    citizen=request.citizen,
                    groups=",".join(sorted(request.groups)),
                    created_at=request.created_at,
                    created_by=instance,
                    state=request.state,
                    callee=request.callee,
                )
                .on_conflict_do_nothing()
            )
        return bool(result.rowcount)

    def get(self, request_id: str) -> CallRequest | None:
        """The request, or ``None``."""
        table = citizen_call_requests
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(table).where(table.c.request_id == request_id))
                .mappings()
                .first()
            )
        if row is None:
            return None
        return CallRequest(
            row["request_id"],
            row["unit"],
            row["citizen"],
            frozenset(g for g in row["groups"].split(",") if g),
            row["created_at"],
            row["state"],
            row["accepted_by"],
            row["accepted_name"],
            row["reason"],
            row["callee"],
            row["rung_at"],
        )

    def accept(self, request_id: str, staff_id: str, name: str, now: float) -> bool:
        """Atomically take a ringing request; ``False`` if someone was first or it ended."""
        table = citizen_call_requests
        with self.engine.begin() as conn:
            result = conn.execute(
                update(table)
                .where(
                    table.c.request_id == request_id,
                    table.c.state == "ringing",
                    table.c.accepted_by.is_(None),
                )
                .values(state="accepted", accepted_by=staff_id, accepted_name=name, accepted_at=now)
            )
        return bool(result.rowcount)

    def ringing_before(self, cutoff: float, *, to_contacts: bool = False) -> list[CallRequest]:
        """Requests to the staff (or, ``to_contacts``, to contacts) still ringing that were made
        before ``cutoff``."""
        table = citizen_call_requests
        callee = table.c.callee.is_not(None) if to_contacts else table.c.callee.is_(None)
        with self.engine.connect() as conn:
            ids = conn.execute(
                select(table.c.request_id).where(
                    table.c.state == "ringing", table.c.created_at < cutoff, callee
                )
            ).scalars()
            found = list(ids)
        return [r for r in (self.get(i) for i in found) if r is not None]

    def rung(self, request_id: str, now: float) -> None:
        """A contact's page rang for the request (the first instance to ring sets the time)."""
        table = citizen_call_requests
        with self.engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.request_id == request_id, table.c.rung_at.is_(None))
                .values(rung_at=now)
            )

    def finish(self, request_id: str, state: str, reason: str) -> bool:
        """Move a ringing request to ``state``; ``False`` if it was no longer ringing."""
        table = citizen_call_requests
        with self.engine.begin() as conn:
            result = conn.execute(
                update(table)
                .where(table.c.request_id == request_id, table.c.state == "ringing")
                .values(state=state, reason=reason[:200])
            )
        return bool(result.rowcount)

    def holder(self, request_id: str) -> tuple[str, str] | None:
        """``(staff id, unit)`` of whoever accepted the request."""
        found = self.get(request_id)
        if found is None or found.accepted_by is None:
            return None
        return found.accepted_by, found.unit

    def add_escalation(
        self, at: float, unit: str, citizen: str | None, groups: set[str], reason: str, req: str
    ) -> int:
        """Record an escalation; its id."""
        with self.engine.begin() as conn:
            result = conn.execute(
                escalations.insert().values(
                    at=at,
                    unit=unit,
                    citizen=citizen,
                    group=",".join(sorted(groups)) or None,
                    reason=to_column(reason),
                    request_id=req,
                )
            )
        key = result.inserted_primary_key
        return int(key[0]) if key else 0

    def recent_escalations(self, groups: set[str], limit: int = 100) -> list[dict[str, Any]]:
        """The newest escalations concerning any of ``groups``, newest first."""
        query = select(escalations).order_by(escalations.c.at.desc()).limit(1000)
        found: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                mine = {g for g in (row["group"] or "").split(",") if g} & groups
                if mine:
                    said = from_column(str(row["reason"] or ""))
                    found.append({**dict(row), **with_code(said)})
                if len(found) >= limit:
                    break
        return found
