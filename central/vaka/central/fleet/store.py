"""The fleet registry's storage: units, their latest health, a short health history and their
events.

SQLAlchemy Core over SQLite (the embedded default) or PostgreSQL (``postgresql+psycopg://``):
the same statements serve both. Nothing a second central instance would need lives only in this
process: presence is merged *in the database* with a conditional upsert, so several instances can
write concurrently and still converge (see :mod:`vaka.central.fleet.presence`).
"""

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from sqlalchemy import Table, select, tuple_
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from vaka.central.fleet.history import HealthRing
from vaka.central.fleet.presence import RANK, Presence, merge
from vaka.central.settings.fleet import Thresholds
from vaka.central.storage.engine import open_engine, upsert
from vaka.central.storage.tables import events, health, health_history, units
from vaka.errors import RegistryError

log = logging.getLogger(__name__)

#: how often health moves a unit's ``units.last_seen`` (per instance). It only tells long-silent
#: units (days) and when a unit was last heard of; the newest health sample's own receive time
#: is exact. Once a minute instead of at every report takes one of the three writes per report
#: off the hot path.
LAST_SEEN_EVERY_S = 60.0


@dataclass(frozen=True)
class StateUpdate:
    """One state message (birth, will or clean stop) as received."""

    device_id: str
    presence: Presence
    received_at: float
    profile: str | None = None
    agent_version: str | None = None


@dataclass(frozen=True)
class HealthUpdate:
    """One health sample as received."""

    device_id: str
    sent_at: float
    received_at: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class EventRecord:
    """One event as received."""

    message_id: str
    device_id: str
    sent_at: float
    received_at: float
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class UnitRecord:
    """What the registry knows of one unit."""

    device_id: str
    profile: str | None
    agent_version: str | None
    presence: Presence
    status_since: float
    first_seen: float
    last_seen: float
    health: dict[str, Any] | None
    health_received_at: float | None


class FleetStore(Protocol):
    """What the registry needs from storage (SQLite and PostgreSQL both serve it)."""

    def apply_states(self, updates: Sequence[StateUpdate]) -> None:
        """Merge presence updates; an older session never overrides a newer one."""

    def put_health(self, samples: Sequence[HealthUpdate]) -> None:
        """Keep the newest health sample per unit."""

    def add_events(self, records: Sequence[EventRecord]) -> list[EventRecord]:
        """Append events not stored yet (by message id); returns those that were new."""

    def units(self) -> list[UnitRecord]:
        """Every known unit."""

    def unit(self, device_id: str) -> UnitRecord | None:
        """One unit, or ``None``."""

    def recent_events(self, device_id: str, limit: int = 50) -> list[EventRecord]:
        """The newest events of one unit, newest first."""

    def health_history(self, device_id: str) -> list[HealthUpdate]:
        """The unit's kept health samples (one per period), newest first."""

    def close(self) -> None:
        """Release connections."""


class SqlFleetStore:
    """:class:`FleetStore` on SQLAlchemy Core. Blocking: call it from a worker thread."""

    def __init__(self, engine: Engine | str, settings: Thresholds | None = None) -> None:
        self.engine: Engine = open_engine(engine) if isinstance(engine, str) else engine
        settings = settings or Thresholds()
        self.ring = HealthRing(settings.health_history_period_s, settings.health_history_slots)
        self._compiled: dict[tuple[str, tuple[str, ...]], Any] = {}
        #: when this store last moved each unit's ``last_seen`` (see LAST_SEEN_EVERY_S)
        self._seen_at: dict[str, float] = {}

    def _insert(self, table: Table) -> Any:
        return upsert(self.engine, table)

    def apply_states(self, updates: Sequence[StateUpdate]) -> None:
        """Merge presence in one conditional upsert per unit (newest ``(bdseq, rank)`` wins)."""
        merged: dict[str, StateUpdate] = {}
        for update in updates:
            seen = merged.get(update.device_id)
            if seen is None or merge(seen.presence, update.presence) is update.presence:
                merged[update.device_id] = update
        if not merged:
            return
        rows = [
            {
                "device_id": u.device_id,
                "profile": u.profile,
                "agent_version": u.agent_version,
                "bdseq": u.presence.bdseq,
                "rank": u.presence.rank,
                "status": u.presence.status,
                "status_since": u.received_at,
                "first_seen": u.received_at,
                "last_seen": u.received_at,
            }
            for u in merged.values()
        ]
        ins = self._insert(units)
        newer = tuple_(ins.excluded.bdseq, ins.excluded.rank) > tuple_(units.c.bdseq, units.c.rank)
        stmt = ins.on_conflict_do_update(
            index_elements=[units.c.device_id],
            set_={
                "profile": ins.excluded.profile,
                "agent_version": ins.excluded.agent_version,
                "bdseq": ins.excluded.bdseq,
                "rank": ins.excluded.rank,
                "status": ins.excluded.status,
                "status_since": ins.excluded.status_since,
                "last_seen": ins.excluded.last_seen,
            },
            where=newer,
        )
        self._write(stmt, rows)

    def put_health(self, samples: Sequence[HealthUpdate]) -> None:
        """Keep the newest sample per unit, mark the units as seen, and move samples of ended
        periods into the history ring."""
        newest: dict[str, HealthUpdate] = {}
        for s in samples:
            if s.device_id not in newest or s.sent_at >= newest[s.device_id].sent_at:
                newest[s.device_id] = s
        if not newest:
            return
        encode = msgspec.json.encode
        rows = [
            {
                "device_id": s.device_id,
                "sent_at": s.sent_at,
                "received_at": s.received_at,
                "payload": encode(s.payload).decode(),
            }
            for s in newest.values()
        ]
        ins = self._insert(health)
        stmt = ins.on_conflict_do_update(
            index_elements=[health.c.device_id],
            set_={
                "sent_at": ins.excluded.sent_at,
                "received_at": ins.excluded.received_at,
                "payload": ins.excluded.payload,
            },
            where=ins.excluded.sent_at >= health.c.sent_at,
        )
        seen_stmt, seen_rows = self._seen(newest)
        rolling = self.ring.rolling(newest)
        try:
            with self.engine.begin() as conn:
                # the samples that were newest of a period now ended, before they are replaced
                history_rows = self.ring.carried_over(conn, rolling, newest)
                self._many(conn, "history", self._history(), history_rows)
                self._many(conn, "health", stmt, rows)
                self._many(conn, "seen", seen_stmt, seen_rows)
        except SQLAlchemyError as err:
            raise RegistryError(f"registry write failed: {err}") from err
        for row in seen_rows:  # only once committed
            self._seen_at[row["device_id"]] = row["last_seen"]
        self.ring.committed(newest)

    def _seen(self, newest: dict[str, HealthUpdate]) -> tuple[Any, list[dict[str, Any]]]:
        """A unit that reports health is known even if its birth was missed (bdseq 0 loses to
        any real state message); its last_seen moves at most every LAST_SEEN_EVERY_S."""
        seen = self._insert(units)
        seen_at = self._seen_at
        seen_rows: list[dict[str, Any]] = [
            {
                "device_id": s.device_id,
                "bdseq": 0,
                "rank": RANK["online"],
                "status": "online",
                "status_since": s.received_at,
                "first_seen": s.received_at,
                "last_seen": s.received_at,
            }
            for s in newest.values()
            if s.received_at - seen_at.get(s.device_id, -math.inf) >= LAST_SEEN_EVERY_S
        ]
        stmt = seen.on_conflict_do_update(
            index_elements=[units.c.device_id], set_={"last_seen": seen.excluded.last_seen}
        )
        return stmt, seen_rows

    def _many(self, conn: Connection, name: str, stmt: Any, rows: list[dict[str, Any]]) -> None:
        """One ``executemany`` on the driver for the hot path (health): the statement compiled
        once for the engine's dialect, so SQLAlchemy does no work per row (about 3 µs a row
        instead of 11-16)."""
        if not rows:
            return
        keys = tuple(rows[0])
        compiled = self._compiled.get((name, keys))
        if compiled is None:
            compiled = stmt.compile(dialect=self.engine.dialect, column_keys=list(keys))
            self._compiled[(name, keys)] = compiled
        order = compiled.positiontup
        params: list[Any] = rows if order is None else [tuple(r[k] for k in order) for r in rows]
        conn.exec_driver_sql(compiled.string, params)

    def _history(self) -> Any:
        """The ring's upsert: a sample takes its period's slot unless a newer one holds it."""
        ins = self._insert(health_history)
        return ins.on_conflict_do_update(
            index_elements=[health_history.c.device_id, health_history.c.slot],
            set_={
                "sent_at": ins.excluded.sent_at,
                "received_at": ins.excluded.received_at,
                "payload": ins.excluded.payload,
            },
            where=ins.excluded.received_at >= health_history.c.received_at,
        )

    def add_events(self, records: Sequence[EventRecord]) -> list[EventRecord]:
        """Append events not stored yet (by message id); returns those that were new."""
        new: list[EventRecord] = []
        try:
            with self.engine.begin() as conn:
                for r in records:
                    stmt = (
                        self._insert(events)
                        .values(
                            message_id=r.message_id,
                            device_id=r.device_id,
                            sent_at=r.sent_at,
                            received_at=r.received_at,
                            kind=r.kind,
                            detail=json.dumps(r.detail, separators=(",", ":")),
                        )
                        .on_conflict_do_nothing(index_elements=["message_id"])
                    )
                    if conn.execute(stmt).rowcount:
                        new.append(r)
        except SQLAlchemyError as err:
            raise RegistryError(f"registry write failed: {err}") from err
        return new

    def _write(self, stmt: Any, rows: list[dict[str, Any]], *more: tuple[Any, list[Any]]) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(stmt, rows)
                for extra_stmt, extra_rows in more:
                    conn.execute(extra_stmt, extra_rows)
        except SQLAlchemyError as err:
            raise RegistryError(f"registry write failed: {err}") from err

    def _records(self, where: Any = None) -> list[UnitRecord]:
        query = select(units, health.c.payload, health.c.received_at.label("h_received")).join(
            health, health.c.device_id == units.c.device_id, isouter=True
        )
        if where is not None:
            query = query.where(where)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(units.c.device_id)).mappings().all()
        return [
            UnitRecord(
                device_id=r["device_id"],
                profile=r["profile"],
                agent_version=r["agent_version"],
                presence=Presence(r["bdseq"], r["rank"], r["status"]),
                status_since=r["status_since"],
                first_seen=r["first_seen"],
                last_seen=r["last_seen"],
                health=json.loads(r["payload"]) if r["payload"] else None,
                health_received_at=r["h_received"],
            )
            for r in rows
        ]

    def units(self) -> list[UnitRecord]:
        """Every known unit, ordered by id."""
        return self._records()

    def unit(self, device_id: str) -> UnitRecord | None:
        """One unit, or ``None``."""
        found = self._records(units.c.device_id == device_id)
        return found[0] if found else None

    def recent_events(self, device_id: str, limit: int = 50) -> list[EventRecord]:
        """The newest events of one unit, newest first."""
        query = (
            select(events)
            .where(events.c.device_id == device_id)
            .order_by(events.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            EventRecord(
                r["message_id"],
                r["device_id"],
                r["sent_at"],
                r["received_at"],
                r["kind"],
                json.loads(r["detail"]),
            )
            for r in rows
        ]

    def health_history(self, device_id: str) -> list[HealthUpdate]:
        """The unit's newest sample of each period within the ring's span, newest first
        (:mod:`vaka.central.fleet.history`)."""
        with self.engine.connect() as conn:
            kept = self.ring.read(conn, device_id)
        return [
            HealthUpdate(device_id, sent, received, payload) for sent, received, payload in kept
        ]

    def close(self) -> None:
        """Dispose of the connection pool. Safe twice."""
        self.engine.dispose()
