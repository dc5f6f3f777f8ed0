"""Turning unit messages into registry writes, in batches, off the event loop.

Messages are validated as they arrive; valid ones are queued and written by one flusher in
batches (one transaction per batch, one batch at a time, in arrival order). Refusals are counted by
reason. Ingest latency (unit's send time to committed write) is kept for ``/api/stats``.

:meth:`FleetIngest.receive` hands the broker link an awaitable that completes when the message's
batch is committed: the link acknowledges the message to the broker only then, so a crash before
the commit gets it redelivered. Call and shutter events enter the audit trail only as
:func:`~vaka.central.audit.call_record.judge` allows (a unit cannot write history); refused ones
are counted per unit, reported once per unit to ``on_forged`` and written down only within a
:class:`~vaka.central.audit.call_record.RefusalBudget`. After each commit the units get a
receipt naming their events (``receipts``): until then a unit keeps them and sends them again.
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vaka.central.audit.call_record import (
    RefusalBudget,
    UnitEvent,
    Verdict,
    is_call_record,
    judge,
    ticketless_refusal,
)
from vaka.central.audit.trail import AuditEntry, AuditLog
from vaka.central.fleet.presence import Presence
from vaka.central.fleet.store import EventRecord, FleetStore, HealthUpdate, StateUpdate
from vaka.errors import RegistryError
from vaka.protocol.hot import FastHealth, FastState, health_fields
from vaka.protocol.inbound import read_unit_report
from vaka.protocol.messages import MAX_RECEIPT_IDS, EventMessage
from vaka.protocol.refusals import Refusals
from vaka.protocol.topics import UNIT_WRITES

log = logging.getLogger(__name__)

#: ``await receipts(device_id, [event ids])``: tell a unit which of its events are committed
Receipts = Callable[[str, list[str]], Awaitable[None]]
#: ``await on_forged(device_id, reason)``: a unit reported a call central never placed (once each)
OnForged = Callable[[str, str], Awaitable[None]]
#: the audit entry of a refused call event, so the record shows the attempt without its claims
REFUSED_KIND = "unit_event_refused"
#: how often one batch may fail on something other than the database before it is dropped
MAX_WRITE_FAILURES = 3


@dataclass
class _Batch:
    states: list[StateUpdate] = field(default_factory=list)
    health: list[HealthUpdate] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    #: set when the batch is committed (the broker link acknowledges its messages then)
    done: asyncio.Future[None] | None = None
    failures: int = 0  # failed writes other than the database being away

    def __len__(self) -> int:
        return len(self.states) + len(self.health) + len(self.events)

    def committed(self) -> asyncio.Future[None]:
        if self.done is None:
            self.done = asyncio.get_running_loop().create_future()
        return self.done


@dataclass
class _Written:
    """What one batch's write found: what to confirm to the units, what was refused."""

    receipts: dict[str, list[str]] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class FleetIngest:
    """Validates unit messages and writes them to a :class:`FleetStore` in batches."""

    def __init__(
        self,
        store: FleetStore,
        audit: AuditLog | None = None,
        flush_interval_s: float = 0.05,
        max_batch: int = 2000,
        *,
        event_hooks: Sequence[Callable[[EventRecord], None]] = (),
        online_hooks: Sequence[Callable[[str], None]] = (),
        receipts: Receipts | None = None,
        on_forged: OnForged | None = None,
        budget: RefusalBudget | None = None,
    ) -> None:
        self.store = store
        self.audit = audit
        self.refusals = Refusals(log)
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        #: Called (on the writing thread) with each event stored for the first time.
        self.event_hooks = tuple(event_hooks)
        #: Called (on the event loop) with the unit's id whenever a unit announces it is online.
        self.online_hooks = tuple(online_hooks)
        self.receipts = receipts
        self.on_forged = on_forged
        self.budget = budget or RefusalBudget()
        self.accepted = 0
        self.written = 0
        #: call and shutter events refused by :func:`judge`, per unit (and those written down)
        self.refused_events: Counter[str] = Counter()
        self.refusals_stored = 0
        #: updates dropped after failing to be written MAX_WRITE_FAILURES times (a bug)
        self.dropped = 0
        self._alerted: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._pending = _Batch()
        self._wake = asyncio.Event()
        self._latencies: deque[float] = deque(maxlen=20_000)
        self._task: asyncio.Task[None] | None = None

    def receive(self, topic: str, payload: Any) -> Awaitable[None] | None:
        """Take one message from the broker link: an awaitable that completes when it is
        committed, or ``None`` if it was refused (the link drops it at once)."""
        if not self.handle(topic, payload):
            return None
        return self._pending.committed()

    def handle(self, topic: str, payload: Any, received_at: float | None = None) -> bool:
        """Validate one message from the broker and queue it; ``False`` if it was refused."""
        received_at = time.time() if received_at is None else received_at
        read = read_unit_report(topic, payload, UNIT_WRITES, self.refusals)
        if read is None:
            return False
        where, message = read
        if isinstance(message, FastHealth):
            self._pending.health.append(
                HealthUpdate(
                    where.device_id, message.ts, received_at, health_fields(message.payload)
                )
            )
        elif isinstance(message, FastState):
            p = message.payload
            if p.status == "online":
                for hook in self.online_hooks:
                    try:
                        hook(where.device_id)
                    except Exception:
                        log.exception("a hook for %s coming online failed", where.device_id)
            self._pending.states.append(
                StateUpdate(
                    where.device_id,
                    Presence.of(p.status, p.bdseq),
                    received_at,
                    p.profile,
                    p.agent_version,
                )
            )
        elif isinstance(message, EventMessage):
            self._pending.events.append(
                EventRecord(
                    message.id,
                    where.device_id,
                    message.ts,
                    received_at,
                    message.payload.kind,
                    dict(message.payload.detail),
                )
            )
        self.accepted += 1
        if len(self._pending) >= self.max_batch:
            self._wake.set()
        return True

    async def run(self) -> None:
        """Flush queued writes until cancelled; a failed write is logged and retried."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything queued so far."""
        batch, self._pending = self._pending, _Batch()
        if not len(batch):
            if batch.done is not None and not batch.done.done():
                batch.done.set_result(None)
            return
        try:
            written = await asyncio.to_thread(self._write, batch)
        except Exception as err:
            if isinstance(err, RegistryError):  # the database is away: keep trying
                log.error("%s; keeping %d updates for the next attempt", err, len(batch))
            else:
                batch.failures += 1
                log.exception("writing %d updates failed (%d times)", len(batch), batch.failures)
            if batch.failures < MAX_WRITE_FAILURES:
                self._requeue(batch)
                await asyncio.sleep(1)
                return
            # The same batch failed on something other than the database, again and again: a
            # bug that would hold up every unit. Drop it (and acknowledge it) rather than stall.
            self.dropped += len(batch)
            if batch.done is not None and not batch.done.done():
                batch.done.set_result(None)
            return
        committed = time.time()
        self.written += len(batch)
        self._latencies.extend(committed - h.sent_at for h in batch.health)
        if batch.done is not None and not batch.done.done():
            batch.done.set_result(None)
        self._after_commit(written)

    def _requeue(self, batch: _Batch) -> None:
        """Put a batch that was not written back in front of what came since."""
        self._pending.states[:0] = batch.states
        self._pending.health[:0] = batch.health
        self._pending.events[:0] = batch.events
        self._pending.failures = max(self._pending.failures, batch.failures)
        if batch.done is not None:  # its messages stay unacknowledged until it is written
            self._pending.committed().add_done_callback(_chain(batch.done))

    def _after_commit(self, written: _Written) -> None:
        """Receipts to the units and the first-refusal reports, without holding up the flusher."""
        for unit, ids in written.receipts.items():
            if self.receipts is not None:
                for start in range(0, len(ids), MAX_RECEIPT_IDS):
                    self._spawn(self._receipt(unit, ids[start : start + MAX_RECEIPT_IDS]))
        for unit, reason in written.refused:
            if unit not in self._alerted and self.on_forged is not None:
                self._alerted.add(unit)
                self._spawn(self.on_forged(unit, reason))

    async def _receipt(self, unit: str, ids: list[str]) -> None:
        assert self.receipts is not None
        try:
            await self.receipts(unit, ids)
        except Exception as err:  # the unit sends them again and gets a receipt then
            log.info("no receipt to %s for now: %s", unit, err)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("after-commit task failed")

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _write(self, batch: _Batch) -> _Written:
        written = _Written()
        self.store.apply_states(batch.states)
        self.store.put_health(batch.health)
        records = [e for e in batch.events if is_call_record(e.kind, e.detail)]
        plain = [e for e in batch.events if not is_call_record(e.kind, e.detail)]
        new_events = self.store.add_events(plain)
        for record in records:
            if self._record_call_event(record, written):
                new_events.append(record)
        for event in batch.events:
            written.receipts.setdefault(event.device_id, []).append(event.message_id)
        for event in new_events:
            for hook in self.event_hooks:
                try:
                    hook(event)
                except Exception:
                    log.exception("event hook failed on %s from %s", event.kind, event.device_id)
        return written

    def _record_call_event(self, record: EventRecord, written: _Written) -> bool:
        """Judge one call or shutter event and write down what it allows; ``True`` if recorded."""
        event = UnitEvent(
            record.message_id,
            record.device_id,
            record.kind,
            record.detail,
            record.sent_at,
            record.received_at,
        )
        if self.audit is None:
            return bool(self.store.add_events([record]))
        verdicts: list[Verdict] = []
        if event.call_id is None:
            # A shutter report outside a call: no call to check against; the stored event's
            # message id tells a resend.
            verdict = judge(None, [], event)
            if verdict.outcome == "refuse":
                self._refuse_call_event(event, verdict.reason, written)
                return False
            if not self.store.add_events([record]):
                return False

        def decide(of_call: list[AuditEntry]) -> dict[str, Any] | None:
            ticket = next((e for e in of_call if e.kind == "ticket_issued"), None)
            from_unit = [e for e in of_call if "event_id" in e.detail]
            verdict = judge(ticket, from_unit, event)
            verdicts[:] = [verdict]
            if verdict.entry is None:
                return None
            e = verdict.entry
            if ticketless_refusal(ticket, event) and not self.budget.take(e.unit, time.time()):
                return None
            return {
                "kind": e.kind,
                "ts": e.ts,
                "actor": e.actor,
                "unit": e.unit,
                "purpose": e.purpose,
                "call_id": e.call_id,
                **e.detail,
            }

        entry = self.audit.append_decided(event.call_id, decide)
        verdict = verdicts[0]
        if verdict.outcome == "refuse":
            self._refuse_call_event(event, verdict.reason, written)
        if entry is not None and event.call_id is not None:
            self.store.add_events([record])
        return entry is not None

    def _refuse_call_event(self, event: UnitEvent, reason: str, written: _Written) -> None:
        """Count a refused call event; write it down (without its claims) within the budget."""
        self.refused_events[event.device_id] += 1
        written.refused.append((event.device_id, reason))
        if not self.budget.take(event.device_id, time.time()):
            return  # counted only: a flood neither grows the trail nor the log
        log.warning(
            "refused %s %s from %s: %s", event.entry_kind, event.event_id, event.device_id, reason
        )
        assert self.audit is not None
        self.refusals_stored += 1
        self.audit.append(
            REFUSED_KIND,
            unit=event.device_id,
            ts=event.received_at,
            reason=reason,
            reported=event.entry_kind[:40],
            claimed_call_id=(event.call_id or "")[:80],
            event_id=event.event_id,
            unit_ts=event.unit_ts,
        )

    def stats(self) -> dict[str, Any]:
        """Counters and ingest latency over the most recent health messages."""
        latencies = list(self._latencies)
        p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
        return {
            "accepted": self.accepted,
            "written": self.written,
            "pending": len(self._pending),
            "refused": dict(self.refusals.by_category),
            "refused_total": self.refusals.total,
            "refused_call_events": dict(self.refused_events),
            "refused_call_events_stored": self.refusals_stored,
            "dropped_after_write_failures": self.dropped,
            "health_latency_ms": {
                "samples": len(latencies),
                "p50": None if p50 is None else round(p50 * 1000, 1),
                "p99": None if p99 is None else round(p99 * 1000, 1),
            },
        }


def _chain(target: asyncio.Future[None]) -> Callable[[asyncio.Future[None]], None]:
    """Complete ``target`` when the future this is attached to completes."""

    def done(_: asyncio.Future[None]) -> None:
        if not target.done():
            target.set_result(None)

    return done
