"""A unit's lifecycle: the one state central keeps of where a unit is in its life, and the rules
for moving it.

::

    enrolling ──first connection──▶ active ◀──resume── suspended
        ▲                            │  ──suspend──▶
        └──────── re-enrol ──────────┤
                                     ├──revoke──▶ revoked ─────────┐
                                     └──decommission──▶ decommissioned
                                                                   │
    revoked / decommissioned ──approve a new code as this unit──▶ enrolling

The state lives in one table (``unit_lifecycle``) and nowhere else: the fleet table, the unit's
page and the alert watch all read it there. A unit without a row is *active*: it was provisioned
outside central's enrolment (a local PKI) or before central kept lifecycles. Presence (online,
degraded, offline) is separate and derived (:mod:`vaka.central.fleet.status`).

Every change is a conditional write on the state it read, so two central instances (or two
technicians) cannot both make the same change: the loser gets ``None`` and audits nothing.
"""

import enum
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from vaka.central.storage.tables import unit_lifecycle
from vaka.errors import ProvisioningError
from vaka.protocol.reasons import from_column, to_column, with_code


class Lifecycle(enum.StrEnum):
    """Where a unit is in its life."""

    ENROLLING = "enrolling"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    DECOMMISSIONED = "decommissioned"


#: the changes a technician (or central) may make from each state
MOVES: dict[Lifecycle, frozenset[Lifecycle]] = {
    Lifecycle.ENROLLING: frozenset(
        {Lifecycle.ACTIVE, Lifecycle.REVOKED, Lifecycle.DECOMMISSIONED, Lifecycle.ENROLLING}
    ),
    Lifecycle.ACTIVE: frozenset(
        {Lifecycle.SUSPENDED, Lifecycle.REVOKED, Lifecycle.DECOMMISSIONED, Lifecycle.ENROLLING}
    ),
    Lifecycle.SUSPENDED: frozenset(
        {Lifecycle.ACTIVE, Lifecycle.REVOKED, Lifecycle.DECOMMISSIONED, Lifecycle.ENROLLING}
    ),
    Lifecycle.REVOKED: frozenset(
        {Lifecycle.REVOKED, Lifecycle.DECOMMISSIONED, Lifecycle.ENROLLING}
    ),
    Lifecycle.DECOMMISSIONED: frozenset({Lifecycle.DECOMMISSIONED, Lifecycle.ENROLLING}),
}

#: states in which a unit is not expected to answer: no alerts are raised for it, and those open
#: are closed when it enters one
QUIET = frozenset({Lifecycle.SUSPENDED, Lifecycle.REVOKED, Lifecycle.DECOMMISSIONED})


class LifecycleRefused(ProvisioningError, ValueError):
    """A lifecycle change that the rules do not allow; the message says why."""


@dataclass(frozen=True)
class LifecycleRecord:
    """One unit's lifecycle state; ``since`` is ``None`` for a unit without a row."""

    unit: str
    state: Lifecycle
    since: float | None = None
    actor: str | None = None
    reason: str | None = None

    def view(self) -> dict[str, object]:
        """The JSON shape in the fleet API (a reason the system wrote carries its code)."""
        said = {"reason": None} if self.reason is None else with_code(self.reason)
        return {"state": self.state.value, "since": self.since, "actor": self.actor, **said}


def check_move(unit: str, old: Lifecycle, new: Lifecycle) -> None:
    """Refuse a change the rules do not allow (:class:`LifecycleRefused`)."""
    if new is old and new not in MOVES[old]:
        raise LifecycleRefused(f"unit {unit} is {old.value} already")
    if new not in MOVES[old]:
        raise LifecycleRefused(f"unit {unit} is {old.value}: it cannot be made {new.value}")


class LifecycleStore:
    """The ``unit_lifecycle`` table. Blocking: call it from a worker thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, unit: str) -> LifecycleRecord:
        """The unit's state (active without a row)."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(unit_lifecycle).where(unit_lifecycle.c.device_id == unit))
                .mappings()
                .first()
            )
        return LifecycleRecord(unit, Lifecycle.ACTIVE) if row is None else _record(dict(row))

    def all(self) -> dict[str, LifecycleRecord]:
        """Every unit that has a row, by id (a unit missing here is active)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(unit_lifecycle)).mappings().all()
        return {r["device_id"]: _record(dict(r)) for r in rows}

    def move(
        self,
        unit: str,
        new: Lifecycle,
        *,
        actor: str | None,
        reason: str | None,
        now: float | None = None,
        only_from: frozenset[Lifecycle] | None = None,
    ) -> LifecycleRecord | None:
        """Move ``unit`` to ``new``; the state it was in, or ``None`` if another writer changed
        it first. Refused (:class:`LifecycleRefused`) if the rules (or ``only_from``) do not
        allow it."""
        now = time.time() if now is None else now
        old = self.get(unit)
        check_move(unit, old.state, new)
        if only_from is not None and old.state not in only_from:
            raise LifecycleRefused(f"unit {unit} is {old.state.value}, not {_either(only_from)}")
        said = to_column(reason or "")
        values = {"state": new.value, "since": now, "actor": actor, "reason": said}
        if old.since is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(unit_lifecycle.insert().values(device_id=unit, **values))
            except IntegrityError:
                return None  # another writer made the first row
            return old
        with self.engine.begin() as conn:
            done = conn.execute(
                update(unit_lifecycle)
                .where(
                    unit_lifecycle.c.device_id == unit,
                    unit_lifecycle.c.state == old.state.value,
                    unit_lifecycle.c.since == old.since,
                )
                .values(**values)
            ).rowcount
        return old if done else None

    def activate(self, unit: str, now: float | None = None) -> bool:
        """An enrolling unit connected: it is active; whether this call made it so."""
        return self.activate_many([unit], now).get(unit, False)

    def activate_many(self, units: list[str], now: float | None = None) -> dict[str, bool]:
        """Units connected: the enrolling ones among them are active now; ``{unit: True}`` for
        each that this call made so (one statement for them all)."""
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            done = conn.execute(
                update(unit_lifecycle)
                .where(
                    unit_lifecycle.c.device_id.in_(units),
                    unit_lifecycle.c.state == Lifecycle.ENROLLING.value,
                )
                .values(state=Lifecycle.ACTIVE.value, since=now, actor=None, reason=None)
                .returning(unit_lifecycle.c.device_id)
            ).scalars()
            return dict.fromkeys(done, True)


def _either(states: frozenset[Lifecycle]) -> str:
    return " or ".join(sorted(s.value for s in states))


def _record(row: dict[str, object]) -> LifecycleRecord:
    return LifecycleRecord(
        unit=str(row["device_id"]),
        state=Lifecycle(str(row["state"])),
        since=float(row["since"]),  # type: ignore[arg-type]
        actor=None if row["actor"] is None else str(row["actor"]),
        reason=None if row["reason"] is None else from_column(str(row["reason"])) or None,
    )
