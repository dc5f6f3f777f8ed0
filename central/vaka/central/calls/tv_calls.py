"""The TV calls one of the citizen's contacts: the citizen pressed a picture on the People screen.

The unit sends the same request the staff button sends (``SignalPayload(kind="request",
call_id=REQ, state="contact_call", callee=<contact id>)``, REQ being ``<unit id>.<12 hex>``).
Central checks the rules (:meth:`~vaka.central.circle.calls.ContactCalls.authorize_called`: the
contact is the unit's citizen's, not removed, ``may_be_called``, and the home's consent to
contact calls is valid), keeps the request in ``citizen_call_requests`` with the contact as
``callee``, and rings the contact's page on every ring socket the contact keeps open
(``GET /api/contact/ring``): ``{"type": "ring", "request_id", "unit"}``. The unit hears
``state=ringing``.

The contact answers by dialling the unit over the call WebSocket with ``purpose=contact_call``
and ``request=REQ`` (:mod:`vaka.central.calls.relay`): :meth:`TvCalls.accept` wins the row
(first answer wins), the ticket names the request and the unit takes the call at once. The
contact's Decline (``{"type": "decline", "request_id"}`` on the ring socket), nobody to ring
(no page open after :data:`ABSENT_S`), or no answer within ``[calls] ring_timeout_s`` ends the
request; the unit hears ``error`` with ``state=unavailable`` and says "<name> is not available
right now". Every step is audited (who, when; never content); how long the call lasted comes
from the unit's call events, as for every call.

Several central instances: each sees every ``signal/out``; the row is created once, each
instance rings the sockets it holds (the first to ring sets ``rung_at``) and watches the row, as
for the staff button (:mod:`vaka.central.calls.citizen`); :meth:`TvCalls.run` settles requests
left ringing by an instance that stopped.

A contact of kind citizen is another citizen's TV: the instance that created the request's row
runs that call between the two units (:mod:`vaka.central.calls.tv_to_tv`) instead of ringing a
page.
"""

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from vaka.central.audit.trail import AuditLog
from vaka.central.broker.mqtt import PublishToUnit
from vaka.central.calls.channel import StaffChannel
from vaka.central.calls.requests import CallRequest, RequestBook
from vaka.central.calls.ringing import NO_LONGER_RINGING, send
from vaka.central.calls.to_unit import tell_unit
from vaka.central.circle.calls import CONTACT_PURPOSE, ContactCalls, PeerCall
from vaka.central.directory.policy import Authorization, CallRefused
from vaka.central.settings.calls import CallLimits
from vaka.protocol.messages import SignalPayload
from vaka.protocol.reasons import Reason, from_column, reason_of, to_column, with_code
from vaka.tasks import TaskSet

if TYPE_CHECKING:
    from vaka.central.calls.tv_to_tv import TvToTv

log = logging.getLogger(__name__)

#: makes the desk of calls between two TVs around the request book (see :mod:`.tv_to_tv`)
TvToTvFactory = Callable[[RequestBook], "TvToTv"]

#: what the unit hears when the contact cannot be reached (the audit trail has the reason)
UNAVAILABLE = "unavailable"
#: ... when the callee is another citizen whose circle does not name the caller's citizen
ONE_SIDED = "one_sided"
#: how long the creating instance waits for any instance to ring the contact's page
ABSENT_S = 2.0
#: how often an instance looks at a ringing request's row
POLL_S = 0.25
#: how long after a request's deadline another instance settles it (its creator is gone)
TAKEOVER_S = 5.0
_REQUEST_SUFFIX = re.compile(r"[0-9a-f]{12}")


class TvCalls:
    """Rings contacts' pages for their citizen's TV and settles who answers, for one instance."""

    def __init__(
        self,
        identity: str,
        rules: ContactCalls,
        audit: AuditLog,
        limits: CallLimits,
        publish: PublishToUnit,
        tvs: "TvToTvFactory | None" = None,
    ) -> None:
        self.identity = identity
        self.rules = rules
        self.audit = audit
        self.limits = limits
        self.publish = publish
        self.book = RequestBook(rules.directory.engine)
        #: calls to another citizen's TV (a contact of kind citizen); none: refused
        self.tvs = tvs(self.book) if tvs is not None else None
        self._sockets: dict[str, set[StaffChannel]] = {}
        #: request id -> (contact id, the sockets rung, done)
        self._rings: dict[str, tuple[str, set[StaffChannel], asyncio.Event]] = {}
        #: per request rung here: set once its "rang" is in the audit trail (a Decline waits for it)
        self._rang: dict[str, asyncio.Event] = {}
        self._tasks = TaskSet(log, "a TV's call to a contact")

    # ------------------------------------------------------------ the contacts' ring sockets

    def add_socket(self, contact_id: str, ws: StaffChannel) -> None:
        """The contact's page opened its ring socket on this instance."""
        self._sockets.setdefault(contact_id, set()).add(ws)

    def listening(self, contact_id: str) -> bool:
        """Whether the contact's page keeps a ring socket open on this instance."""
        return bool(self._sockets.get(contact_id))

    def discard_socket(self, contact_id: str, ws: StaffChannel) -> None:
        """The ring socket closed."""
        sockets = self._sockets.get(contact_id, set())
        sockets.discard(ws)
        if not sockets:
            self._sockets.pop(contact_id, None)

    async def decline(self, contact_id: str, request_id: str) -> bool:
        """The contact pressed Decline on their page; whether it ended the request."""
        request = await asyncio.to_thread(self.book.get, request_id)
        if request is None or request.callee != contact_id:
            return False
        reason = Reason("the contact declined", "contact_declined")
        rang = self._rang.get(request_id)
        if rang is not None:  # the trail says "rang" before "declined"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rang.wait(), 5)
        return await self._end(request, "declined", reason)

    # ------------------------------------------------------------ from the units

    def on_unit_signal(self, device_id: str, payload: SignalPayload) -> bool:
        """A unit's ``request`` to call a contact, or its ``hangup`` of one ringing here;
        whether this desk took it."""
        if self.tvs is not None and self.tvs.on_unit_signal(device_id, payload):
            return True
        if payload.kind == "request" and payload.state == CONTACT_PURPOSE:
            self._spawn(self._on_request(device_id, payload))
            return True
        if payload.kind == "hangup" and payload.call_id in self._rings:
            self._spawn(self._on_cancel(device_id, payload))
            return True
        return False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro)

    async def _audit(self, kind: str, **fields: Any) -> None:
        await asyncio.to_thread(self.audit.append, kind, **fields)

    async def _send_unit(self, unit: str, payload: SignalPayload) -> None:
        await tell_unit(self.publish, unit, payload)

    async def _unavailable(self, unit: str, req: str, reason: str) -> None:
        # A TV says "not available" to every refusal but a one-sided relation between two
        # citizens, which it words "cannot be called from this TV yet"; a TV that predates it
        # reads only the kind.
        code = reason.code if isinstance(reason, Reason) else None
        state = ONE_SIDED if code == "citizen_one_sided" else UNAVAILABLE
        payload = SignalPayload(kind="error", call_id=req, state=state, reason=reason[:200])
        await self._send_unit(unit, payload)

    async def _on_request(self, unit: str, payload: SignalPayload) -> None:
        req, callee = payload.call_id, payload.callee
        prefix, _, suffix = req.rpartition(".")
        if prefix != unit or not _REQUEST_SUFFIX.fullmatch(suffix) or not callee:
            log.warning("refused contact call request %r from %s: malformed", req, unit)
            await self._unavailable(unit, req, "a request names <unit>.<12 hex> and the contact")
            return
        if req in self._rings:
            return  # the same request delivered twice
        now = time.time()
        fields = {"unit": unit, "call_id": req, "purpose": CONTACT_PURPOSE, "contact": callee}
        peer: PeerCall | None = None
        try:
            contact = await asyncio.to_thread(self.rules.authorize_called, callee, unit, now)
            if contact.peer_citizen is not None:
                if self.tvs is None:
                    raise CallRefused(
                        Reason("calls between citizens are not taken here", "tv_cannot_call")
                    )
                peer = await asyncio.to_thread(self.rules.authorize_peer, callee, unit, now)
        except CallRefused as err:
            await self._audit("contact_call_refused", **fields, reason=str(err))
            await self._unavailable(unit, req, reason_of(err))
            return
        request = CallRequest(
            req, unit, contact.citizen_id, frozenset(), now, "ringing", None, None, None, callee
        )
        if not await asyncio.to_thread(self.book.create, request, self.identity):
            if peer is not None:
                return  # another instance runs it
            existing = await asyncio.to_thread(self.book.get, req)
            if existing is not None and existing.state == "ringing":
                await self._ring(existing, creator=False)
            return
        await self._audit("contact_call_requested", **fields, citizen=contact.citizen_id)
        if peer is not None and self.tvs is not None:
            await self.tvs.run(request, peer)
            return
        await self._ring(request, creator=True)

    async def _on_cancel(self, unit: str, payload: SignalPayload) -> None:
        request = await asyncio.to_thread(self.book.get, payload.call_id)
        if request is not None and request.unit == unit:
            reason = Reason("cancelled on the TV", "ring_cancelled")
            await self._end(request, "cancelled", reason)

    # ------------------------------------------------------------ ringing

    async def _ring(self, request: CallRequest, creator: bool) -> None:
        """Ring this instance's sockets of the contact until the request ends."""
        req, contact = request.request_id, request.callee or ""
        rung: set[StaffChannel] = set()
        done = asyncio.Event()
        self._rings[req] = (contact, rung, done)
        rang = self._rang[req] = asyncio.Event()
        try:
            message = {"type": "ring", "request_id": req, "unit": request.unit}
            for ws in list(self._sockets.get(contact, ())):
                if await send(ws, message):
                    rung.add(ws)
            if rung:
                await asyncio.to_thread(self.book.rung, req, time.time())
                await self._audit(
                    "contact_call_rang",
                    unit=request.unit,
                    call_id=req,
                    purpose=CONTACT_PURPOSE,
                    contact=contact,
                    instance=self.identity,
                )
            rang.set()
            if creator:
                said = SignalPayload(kind="state", call_id=req, state="ringing")
                await self._send_unit(request.unit, said)
            ended = await self._watch(request, creator)
            stop = {"type": "stop_ringing", "request_id": req, **with_code(ended)}
            await asyncio.gather(*(send(ws, stop) for ws in rung))
        finally:
            rang.set()
            self._rang.pop(req, None)
            self._rings.pop(req, None)

    async def _watch(self, request: CallRequest, creator: bool) -> str:
        """Until the row leaves ``ringing`` (or this instance ends it); why it ended."""
        req = request.request_id
        deadline = request.created_at + self.limits.ring_timeout_s
        while True:
            now = time.time()
            row = await asyncio.to_thread(self.book.get, req)
            if row is None or row.state != "ringing":
                said = row.reason if row is not None else None
                return from_column(said) if said else NO_LONGER_RINGING
            if creator and row.rung_at is None and now >= request.created_at + ABSENT_S:
                reason = Reason("the contact's page is not open", "contact_absent")
                if await self._end(row, "absent", reason):
                    return reason
            if now >= deadline + (0 if creator else TAKEOVER_S):
                reason = Reason("the contact did not answer", "contact_no_answer")
                if await self._end(row, "unanswered", reason):
                    return reason
            _contact, _rung, done = self._rings[req]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), POLL_S)

    async def _end(self, request: CallRequest, state: str, reason: Reason) -> bool:
        """Settle a ringing request as ``state``: the unit hears it (unless it cancelled);
        whether this call settled it."""
        req = request.request_id
        if not await asyncio.to_thread(self.book.finish, req, state, to_column(reason)):
            return False
        await self._audit(
            f"contact_call_{state}",
            unit=request.unit,
            call_id=req,
            purpose=CONTACT_PURPOSE,
            contact=request.callee,
            reason=str(reason),
        )
        if state != "cancelled":
            await self._unavailable(request.unit, req, str(reason))
        ring = self._rings.get(req)
        if ring is not None:
            ring[2].set()
        return True

    async def sweep(self, now: float | None = None) -> int:
        """Settle requests to contacts still ringing well past their time with nobody watching
        them (their instance stopped); how many this instance settled."""
        now = time.time() if now is None else now
        cutoff = now - self.limits.ring_timeout_s - TAKEOVER_S
        book, settled = self.book, 0
        for row in await asyncio.to_thread(book.ringing_before, cutoff, to_contacts=True):
            reason = Reason("the contact did not answer", "contact_no_answer")
            mine = row.request_id in self._rings or (
                self.tvs is not None and self.tvs.runs(row.request_id)
            )
            if not mine and await self._end(row, "unanswered", reason):
                settled += 1
        return settled

    async def run(self, every_s: float = 10.0) -> None:
        """:meth:`sweep` every ``every_s`` seconds until cancelled."""
        while True:
            try:
                if settled := await self.sweep():
                    log.warning("settled %d call(s) to contacts left ringing", settled)
            except Exception:
                log.exception("sweeping calls to contacts failed; trying again")
            await asyncio.sleep(every_s)

    # ------------------------------------------------------------ the contact answers

    async def answer(
        self, contact_id: str, request_id: str, unit: str, now: float
    ) -> Authorization:
        """The ticket's authorization for the contact who answers the TV's call: the rules of
        being called (not the hours of calling), then the request is won (first answer wins).
        :class:`CallRefused` with a coded reason if not."""
        check = self.rules.authorize_answer
        allowed = await asyncio.to_thread(check, contact_id, unit, now)
        await self.accept(contact_id, request_id, unit)
        return allowed

    async def accept(self, contact_id: str, request_id: str, unit: str) -> None:
        """Take ``request_id`` for the contact who answered; :class:`CallRefused` if not."""
        request = await asyncio.to_thread(self.book.get, request_id)
        if request is None or request.callee != contact_id or request.unit != unit:
            raise CallRefused(Reason("the TV is no longer calling you", "no_longer_ringing"))
        won = request.state == "ringing" and await asyncio.to_thread(
            self.book.accept, request_id, contact_id, contact_id, time.time()
        )
        if not won:
            raise CallRefused(Reason("the TV is no longer calling you", "no_longer_ringing"))
        ring = self._rings.get(request_id)
        if ring is not None:
            ring[2].set()
        await self._audit(
            "contact_call_accepted",
            actor=contact_id,
            unit=unit,
            call_id=request_id,
            purpose=CONTACT_PURPOSE,
            citizen=request.citizen,
        )

    async def close(self) -> None:
        """Stop ringing and background work. Safe twice."""
        for _contact, _rung, done in list(self._rings.values()):
            done.set()
        await self._tasks.close()
