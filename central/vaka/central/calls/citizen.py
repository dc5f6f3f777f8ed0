"""The citizen's one button: ring the night staff on duty; the first to accept takes the call.

A ``tv`` unit publishes ``SignalPayload(kind="request", call_id=REQ, state="citizen_call")`` on
its ``signal/out``, REQ being ``<unit id>.<12 hex>``. Central finds the groups that take
``citizen_call`` from that citizen (direction ``from_unit``) and everyone on duty in them, and
rings each ring socket (``GET /api/duty/ring``, :mod:`vaka.central.calls.ringing`) at once. The
unit hears ``state=ringing``.

A staff member accepts by dialling ``purpose=citizen_call`` with ``request=REQ`` over the call
WebSocket (:mod:`vaka.central.calls.relay`). The first accept wins a conditional UPDATE on the
request's row; every other ring socket gets ``stop_ringing``. Nobody on duty, or nobody accepting
within ``[calls] citizen_call_ring_s``, raises an escalation: an audit entry, a row in
``escalations`` and a call to the injected ``notify`` hook. The unit may cancel with a
``hangup`` for REQ while it rings.

Several central instances: each sees every ``signal/out``; inserting the request row is
idempotent, and the instance that created it tells the unit and escalates. Every instance rings
its own ring sockets and watches the row (every 0.25 s) to stop them when it leaves ``ringing``.
"""

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from vaka.central.audit.trail import AuditLog
from vaka.central.broker.mqtt import PublishToUnit
from vaka.central.calls import reasons
from vaka.central.calls.duty import DutyRoster
from vaka.central.calls.reasons import nobody_to_ring, request_ended
from vaka.central.calls.requests import CallRequest, RequestBook
from vaka.central.calls.ringing import NO_LONGER_RINGING, Ring, RingSockets
from vaka.central.calls.to_unit import tell_unit
from vaka.central.directory.directory import Directory, StaffMember
from vaka.central.directory.policy import ROLE_PURPOSES, CallRefused, citizen_call_groups
from vaka.central.settings.calls import CallLimits
from vaka.protocol.messages import SignalPayload
from vaka.protocol.reasons import Reason
from vaka.tasks import TaskSet

log = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], Awaitable[None]]
#: What the unit shows when nobody can be rung (the audit trail has the exact reason).
NO_STAFF = reasons.NO_STAFF
#: How often an instance looks at a ringing request's row.
POLL_S = 0.25
#: How long after a request's deadline another instance settles it (its creator is gone).
TAKEOVER_S = 5.0

_REQUEST_SUFFIX = re.compile(r"[0-9a-f]{12}")


async def no_notify(kind: str, detail: dict[str, Any]) -> None:
    """The default ``notify`` hook: nothing beyond the audit trail and the table."""


class CitizenCallDesk:
    """Rings the watch for citizens' requests and settles who takes them, for one instance."""

    def __init__(
        self,
        identity: str,
        directory: Directory,
        roster: DutyRoster,
        audit: AuditLog,
        limits: CallLimits,
        publish: PublishToUnit,
        notify: Notify = no_notify,
    ) -> None:
        self.identity = identity
        self.directory = directory
        self.roster = roster
        self.audit = audit
        self.limits = limits
        self.publish = publish
        self.notify = notify
        self.book = RequestBook(directory.engine)
        #: the ring sockets staff on duty keep open to this instance
        self.sockets = RingSockets()
        self._rings: dict[str, Ring] = {}
        self._tasks = TaskSet(log, "citizen call task")

    # ------------------------------------------------------------ the policy's ledger

    def on_duty(self, staff_id: str) -> bool:
        """Whether ``staff_id`` is on duty (blocking)."""
        return self.roster.since(staff_id) is not None

    def holder(self, request_id: str) -> tuple[str, str] | None:
        """Who accepted ``request_id`` and from which unit it came (blocking)."""
        return self.book.holder(request_id)

    # ------------------------------------------------------------ from the units

    def on_unit_signal(self, device_id: str, payload: SignalPayload) -> bool:
        """A ``request`` or ``hangup`` on a unit's ``signal/out`` that no call of this instance
        claims; whether the desk took it."""
        if payload.kind == "request":
            self._spawn(self._on_request(device_id, payload))
            return True
        if payload.kind == "hangup" and payload.call_id.startswith(f"{device_id}."):
            self._spawn(self._on_cancel(device_id, payload))
            return True
        return False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro)

    async def _audit(self, kind: str, **fields: Any) -> None:
        await asyncio.to_thread(self.audit.append, kind, **fields)

    async def _send_unit(self, unit: str, payload: SignalPayload) -> None:
        await tell_unit(self.publish, unit, payload)

    async def _on_request(self, unit: str, payload: SignalPayload) -> None:
        req = payload.call_id
        prefix, _, suffix = req.rpartition(".")
        if prefix != unit or not _REQUEST_SUFFIX.fullmatch(suffix):
            log.warning("refused citizen call request %r from %s: bad request id", req, unit)
            await self._send_unit(
                unit,
                SignalPayload(
                    kind="error",
                    call_id=req,
                    state="refused",
                    reason=f"a request id is {unit}.<12 hex digits>",
                ),
            )
            return
        if req in self._rings:
            return  # the same request delivered twice
        citizen = await asyncio.to_thread(self.directory.citizen_of, unit)
        groups: set[str] = set()
        if citizen is not None:
            groups = await asyncio.to_thread(
                self.directory.permitting_groups, citizen, "citizen_call", "from_unit"
            )
        request = CallRequest(
            req, unit, citizen, frozenset(groups), time.time(), "ringing", None, None, None
        )
        if not await asyncio.to_thread(self.book.create, request, self.identity):
            existing = await asyncio.to_thread(self.book.get, req)
            if existing is not None and existing.state == "ringing":
                await self._ring(existing, creator=False)
            return
        await self._audit(
            "citizen_call_requested",
            unit=unit,
            call_id=req,
            purpose="citizen_call",
            citizen=citizen,
            groups=sorted(groups),
        )
        watch = await asyncio.to_thread(self.roster.watch, groups)
        live = {w.staff_id for w in watch if w.ringable}
        problem = nobody_to_ring(unit, citizen, groups, bool(watch), bool(live))
        if problem is not None:
            if await asyncio.to_thread(self.book.finish, req, "no_staff", problem):
                await self._send_unit(
                    unit,
                    SignalPayload(kind="error", call_id=req, state="no_staff", reason=NO_STAFF),
                )
                await self._escalate(request, problem)
            return
        await self._ring(request, creator=True, live=len(live))

    async def _on_cancel(self, unit: str, payload: SignalPayload) -> None:
        req = payload.call_id
        reason = payload.reason or "cancelled"
        if await asyncio.to_thread(self.book.finish, req, "cancelled", reason):
            await self._audit(
                "citizen_call_cancelled",
                unit=unit,
                call_id=req,
                purpose="citizen_call",
                reason=reason,
            )
        ring = self._rings.get(req)
        if ring is not None:
            ring.stop(Reason("cancelled by the citizen", "ring_cancelled"))

    # ------------------------------------------------------------ ringing

    async def _ring(self, request: CallRequest, creator: bool, live: int = 0) -> None:
        """Ring this instance's sockets for ``request`` until it is taken, cancelled or late."""
        ring = Ring(request)
        self._rings[request.request_id] = ring
        try:
            await self._start(ring)
            if creator:
                await self._send_unit(
                    request.unit,
                    SignalPayload(
                        kind="state",
                        call_id=request.request_id,
                        state="ringing",
                        reason=f"ringing {live} night staff",
                    ),
                )
            await self._watch(ring, creator)
        finally:
            await self.sockets.stop(ring)
            self._rings.pop(request.request_id, None)

    async def _start(self, ring: Ring) -> None:
        request = ring.request
        watch = await asyncio.to_thread(self.roster.watch, set(request.groups))
        rung = await self.sockets.ring(ring, watch)
        if rung:
            await self._audit(
                "citizen_call_rang",
                unit=request.unit,
                call_id=request.request_id,
                purpose="citizen_call",
                staff=sorted(rung),
                instance=self.identity,
            )

    async def _watch(self, ring: Ring, creator: bool) -> None:
        req = ring.request.request_id
        ring_s = self.limits.citizen_call_ring_s
        deadline = ring.request.created_at + ring_s
        while not ring.done.is_set():
            remaining = deadline - time.time()
            # The creating instance gives up at the deadline; the others a little later, in
            # case it is gone (whoever settles the row first tells the unit and escalates).
            if remaining <= 0 and (creator or remaining < -TAKEOVER_S):
                if await self._give_up(ring.request):
                    ring.stop(Reason("unanswered", "request_unanswered"))
                    return
                if not creator:
                    ring.stop(NO_LONGER_RINGING)
                    return
            pause = min(POLL_S, max(remaining, 0.01)) if remaining > 0 else POLL_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ring.done.wait(), pause)
            if ring.done.is_set():
                return
            row = await asyncio.to_thread(self.book.get, req)
            if row is None or row.state != "ringing":
                ring.stop(request_ended(row))

    async def _give_up(self, request: CallRequest) -> bool:
        """Settle a request nobody answered in time: the unit hears ``unanswered`` and central
        escalates. ``False`` if it was no longer ringing (taken, cancelled, or settled by
        another instance)."""
        ring_s = self.limits.citizen_call_ring_s
        reason = Reason(
            f"nobody from the night staff answered within {ring_s:.0f} s",
            "staff_no_answer",
            seconds=round(ring_s),
        )
        req = request.request_id
        if not await asyncio.to_thread(self.book.finish, req, "unanswered", reason):
            return False
        await self._send_unit(
            request.unit,
            SignalPayload(kind="error", call_id=req, state="unanswered", reason=reason),
        )
        await self._escalate(request, reason)
        return True

    async def sweep(self, now: float | None = None) -> int:
        """Settle requests still ringing well past their time with nobody watching them (their
        instance stopped, or central restarted); how many this instance settled."""
        now = time.time() if now is None else now
        cutoff = now - self.limits.citizen_call_ring_s - TAKEOVER_S
        settled = 0
        for request in await asyncio.to_thread(self.book.ringing_before, cutoff):
            if request.request_id not in self._rings and await self._give_up(request):
                settled += 1
        return settled

    async def run(self, every_s: float = 10.0) -> None:
        """:meth:`sweep` every ``every_s`` seconds until cancelled."""
        while True:
            try:
                if settled := await self.sweep():
                    log.warning("settled %d citizen call(s) left ringing", settled)
            except Exception:
                log.exception("sweeping citizen calls failed; trying again")
            await asyncio.sleep(every_s)

    async def _escalate(self, request: CallRequest, reason: str) -> None:
        at = time.time()
        groups = set(request.groups)
        escalation_id = await asyncio.to_thread(
            self.book.add_escalation,
            at,
            request.unit,
            request.citizen,
            groups,
            reason,
            request.request_id,
        )
        group = ",".join(sorted(groups)) or None
        await self._audit(
            "citizen_call_escalated",
            unit=request.unit,
            call_id=request.request_id,
            purpose="citizen_call",
            citizen=request.citizen,
            group=group,
            reason=reason,
        )
        detail = {
            "id": escalation_id,
            "at": at,
            "unit": request.unit,
            "citizen": request.citizen,
            "group": group,
            "reason": reason,
            "request_id": request.request_id,
        }
        try:
            await self.notify("citizen_call_escalated", detail)
        except Exception:  # the hook is someone else's code: log, never lose the escalation
            log.exception("notifying escalation %s failed", escalation_id)

    # ------------------------------------------------------------ from the staff

    async def accept(self, caller: StaffMember, request_id: str, unit: str) -> CallRequest:
        """Take ``request_id`` for ``caller``; :class:`CallRefused` with the reason if not."""
        if "citizen_call" not in ROLE_PURPOSES.get(caller.role, set()):
            raise CallRefused(f"the role {caller.role} may not take citizen calls")
        request = await asyncio.to_thread(self.book.get, request_id)
        if request is None or request.callee is not None:
            raise CallRefused(f"no citizen call request {request_id}")
        if request.unit != unit:
            raise CallRefused(f"the request {request_id} came from unit {request.unit}, not {unit}")
        if request.citizen is None:
            raise CallRefused(f"unit {unit} is not assigned to a citizen")
        await asyncio.to_thread(citizen_call_groups, self.directory, caller, request.citizen)
        if not await asyncio.to_thread(self.on_duty, caller.staff_id):
            raise CallRefused(f"staff {caller.staff_id} is not on duty")
        won = request.state == "ringing" and await asyncio.to_thread(
            self.book.accept, request_id, caller.staff_id, caller.display_name, time.time()
        )
        if not won:
            now = await asyncio.to_thread(self.book.get, request_id)
            raise CallRefused(request_ended(now))
        ring = self._rings.get(request_id)
        if ring is not None:
            ring.stop(
                Reason(
                    f"answered by {caller.display_name}",
                    "already_answered",
                    name=caller.display_name,
                )
            )
        await self._audit(
            "citizen_call_accepted",
            actor=caller.staff_id,
            unit=unit,
            call_id=request_id,
            purpose="citizen_call",
            citizen=request.citizen,
        )
        return request

    async def close(self) -> None:
        """Stop ringing and background work. Safe twice."""
        for ring in list(self._rings.values()):
            ring.stop(Reason("central is shutting down", "central_stopping"))
        await self._tasks.close()
