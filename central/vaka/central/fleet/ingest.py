"""Turning unit messages into registry writes, in batches, off the event loop.

Messages are validated as they arrive; valid ones are queued and written by one flusher in
batches (one transaction per batch, one batch at a time, in arrival order). Refusals are counted by
reason. Ingest latency (unit's send time to committed write) is kept for ``/api/stats``.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vaka.central.audit.trail import AUDITED_EVENTS, AuditLog, audit_unit_event
from vaka.central.fleet.presence import Presence
from vaka.central.fleet.store import EventRecord, FleetStore, HealthUpdate, StateUpdate
from vaka.errors import ProtocolError, RegistryError
from vaka.protocol.messages import EventMessage, HealthMessage, StateMessage, decode
from vaka.protocol.refusals import Refusals
from vaka.protocol.topics import UNIT_WRITES, parse_device_topic

log = logging.getLogger(__name__)


@dataclass
class _Batch:
    states: list[StateUpdate] = field(default_factory=list)
    health: list[HealthUpdate] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.states) + len(self.health) + len(self.events)


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
        self.accepted = 0
        self.written = 0
        self._pending = _Batch()
        self._wake = asyncio.Event()
        self._latencies: deque[float] = deque(maxlen=20_000)
        self._task: asyncio.Task[None] | None = None

    def handle(self, topic: str, payload: Any, received_at: float | None = None) -> bool:
        """Validate one message from the broker and queue it; ``False`` if it was refused."""
        received_at = time.time() if received_at is None else received_at
        try:
            where = parse_device_topic(topic)
            if where.channel not in UNIT_WRITES:
                raise ProtocolError(f"central does not ingest {where.channel.value!r}")
            if not isinstance(payload, bytes | bytearray):
                raise ProtocolError("payload is not bytes")
            message = decode(payload, where.channel)
        except ProtocolError as err:
            self.refusals.refuse(type(err).__name__, str(err), topic[:120])
            return False
        if isinstance(message, StateMessage):
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
        elif isinstance(message, HealthMessage):
            self._pending.health.append(
                HealthUpdate(
                    where.device_id,
                    message.ts,
                    received_at,
                    message.payload.model_dump(mode="json", exclude_none=True),
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
            return
        try:
            await asyncio.to_thread(self._write, batch)
        except RegistryError as err:
            log.error("%s; keeping %d updates for the next attempt", err, len(batch))
            self._pending.states[:0] = batch.states
            self._pending.health[:0] = batch.health
            self._pending.events[:0] = batch.events
            await asyncio.sleep(1)
            return
        committed = time.time()
        self.written += len(batch)
        self._latencies.extend(committed - h.sent_at for h in batch.health)

    def _write(self, batch: _Batch) -> None:
        self.store.apply_states(batch.states)
        self.store.put_health(batch.health)
        new_events = self.store.add_events(batch.events)
        for event in new_events:
            for hook in self.event_hooks:
                try:
                    hook(event)
                except Exception:
                    log.exception("event hook failed on %s from %s", event.kind, event.device_id)
        if self.audit is not None:
            for event in new_events:
                if event.kind in AUDITED_EVENTS:
                    audit_unit_event(self.audit, event)

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
            "health_latency_ms": {
                "samples": len(latencies),
                "p50": None if p50 is None else round(p50 * 1000, 1),
                "p99": None if p99 is None else round(p99 * 1000, 1),
            },
        }
