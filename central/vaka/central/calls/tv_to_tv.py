"""Citizen to citizen: one citizen's TV calls another's, whose citizens are each other's contacts.

Citizen A presses B on the People screen: the same ``request`` as for any contact
(:mod:`vaka.central.calls.tv_calls`), whose callee is a contact of kind citizen. Once the rules
of both sides allow it (:meth:`~vaka.central.circle.calls.ContactCalls.authorize_peer`),
central runs the call between the two units without any new message type, field or claim:

1. to A, a ``request`` (``call_id`` the caller side's call id, ``state="offer"``, ``callee`` the
   citizen's request, ``ticket`` a ticket naming both and A's relay credential, but no peer
   fingerprint: it opens no camera). A makes the WebRTC offer with the presence channel and
   sends it back as an ``offer``. A unit that only answers refuses the unexpected ``request``
   ("unexpected 'request' message"), and A's citizen hears "not available";
2. to B, an ordinary ``offer`` of a ``contact_call`` from B's contact naming A (``sub``, name and
   the picture, signed as for every contact's call), with A's fingerprint in B's ticket. B rings
   as for any contact's call, so a unit that predates this calls nothing new;
3. B's ``answer`` goes to A as an ``answer`` with a second ticket naming B's fingerprint, the
   call and A's request; A checks it like any offer's ticket before it takes the answer.

Each side keeps its own call id (``<instance>.<hex>-a`` / ``-b``), so each unit's call events
are judged against its own ticket as for every call. A hang-up from either side is relayed to
the other. Neither camera runs without the other side present: each unit waits for the other's
heartbeat on the call's presence channel (:mod:`vaka.agent.call.presence`). Central writes one
``tv_to_tv_call_ended`` entry per call (who, when, how long; never content) when the first side
hangs up. The instance that made the call ids runs the call (its ids name it); only it acts on
the units' messages for them.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from joserfc.jwk import OKPKey

from vaka.central.audit.trail import AuditLog
from vaka.central.broker.mqtt import PublishToUnit
from vaka.central.calls.requests import CallRequest, RequestBook
from vaka.central.calls.turn import RelayCredentials, relay_claim
from vaka.central.calls.tv_to_tv_call import NotTaken, TvToTvCall, refusal, ticket_claims
from vaka.central.circle.calls import CONTACT_PURPOSE, ContactCalls, PeerCall
from vaka.central.settings.calls import CallLimits
from vaka.errors import BadMessage, LinkError
from vaka.protocol.messages import SignalMessage, SignalPayload
from vaka.protocol.reasons import Reason, to_column
from vaka.protocol.sdp import check_sdp, preferred_fingerprint
from vaka.protocol.topics import Channel
from vaka.provisioning.tickets import RelayClaim, TicketClaims, sign_ticket

log = logging.getLogger(__name__)

#: what the calling unit hears in ``state`` when central asks it for the offer
OFFER_STATE = "offer"
#: how long the calling unit has to make its offer
OFFER_TIMEOUT_S = 10.0
#: how much longer than the ringing deadline central waits for the callee to say anything
RING_GRACE_S = 5.0
#: the calling unit's word for "unavailable" (as for a contact who cannot answer)
UNAVAILABLE = "unavailable"


class TvToTv:
    """Runs calls between two citizens' TVs for one central instance."""

    def __init__(
        self,
        identity: str,
        rules: ContactCalls,
        book: RequestBook,
        audit: AuditLog,
        limits: CallLimits,
        publish: PublishToUnit,
        ticket_key: OKPKey,
        relay: RelayCredentials,
    ) -> None:
        self.identity = identity
        self.rules = rules
        self.book = book
        self.audit = audit
        self.limits = limits
        self.publish = publish
        self.ticket_key = ticket_key
        self.relay = relay
        self._calls: dict[str, TvToTvCall] = {}  # by either side's call id
        self._requests: dict[str, TvToTvCall] = {}  # by the caller's request id

    def runs(self, request_id: str) -> bool:
        """Whether this instance runs the call of the request ``request_id``."""
        return request_id in self._requests

    # ------------------------------------------------------------ from the units

    def on_unit_signal(self, unit: str, payload: SignalPayload) -> bool:
        """A unit's message about a call this instance runs (or the caller's cancel of its
        request); whether it was one."""
        call = self._calls.get(payload.call_id)
        if call is not None:
            side = call.side(unit, payload.call_id)
            if side is not None:
                call.said.put_nowait((side, payload))
            return True
        call = self._requests.get(payload.call_id)
        if call is not None and payload.kind == "hangup" and unit == call.request.unit:
            call.said.put_nowait(("request", payload))
            return True
        return False

    async def _audit(self, kind: str, **fields: Any) -> None:
        await asyncio.to_thread(self.audit.append, kind, **fields)

    async def _send(self, unit: str, payload: SignalPayload) -> None:
        try:
            await self.publish(unit, Channel.SIGNAL_IN, SignalMessage(payload=payload))
        except LinkError as err:
            log.warning("cannot tell unit %s about %s: %s", unit, payload.call_id, err)

    # ------------------------------------------------------------ one call

    async def run(self, request: CallRequest, peer: PeerCall) -> None:
        """Run the call of ``request`` (this instance created its row) to its end."""
        base = f"{self.identity}.{uuid.uuid4().hex[:16]}"
        call = TvToTvCall(request, peer, f"{base}-a", f"{base}-b")
        self._calls[call.caller_cid] = self._calls[call.callee_cid] = call
        self._requests[request.request_id] = call
        opened = False
        try:
            now = time.time()
            expires_at = int(now) + self.limits.ticket_ttl_s
            credential = await self.relay.mint(call.caller_cid, "unit", expires_at, now)
            caller_relay = relay_claim(credential)
            try:
                offer = await self._ask_offer(call, caller_relay, now)
                await self.rules.call_opened(
                    peer.caller.contact_id, call.callee_cid, peer.callee_unit
                )
                await asyncio.to_thread(
                    self.rules.book.call_opened,
                    peer.callee.contact_id,
                    call.caller_cid,
                    request.unit,
                )
                opened = True
                answer, fp = await self._ring(call, offer)
                await self._accept(call)
            except NotTaken as ended:
                await self._not_taken(call, ended)
                return
            await self._connect(call, answer, fp, caller_relay)
            await self._follow(call)
        finally:
            for cid in (call.caller_cid, call.callee_cid):
                self._calls.pop(cid, None)
            self._requests.pop(request.request_id, None)
            if opened:
                book = self.rules.book
                await asyncio.to_thread(book.call_closed, peer.caller.contact_id, call.callee_cid)
                await asyncio.to_thread(book.call_closed, peer.callee.contact_id, call.caller_cid)

    async def _issued(self, call: TvToTvCall, claims: TicketClaims, step: str) -> None:
        citizen = (
            call.request.citizen if claims.aud == call.request.unit else call.peer.caller.citizen_id
        )
        await self._audit(
            "ticket_issued",
            actor=claims.sub,
            unit=claims.aud,
            purpose=CONTACT_PURPOSE,
            call_id=claims.cid,
            request=call.request.request_id,
            citizen=citizen,
            nonce=claims.jti,
            window=list(claims.win),
            max_duration_s=claims.maxd,
            step=step,
        )

    async def _next(self, call: TvToTvCall, timeout: float) -> tuple[str, SignalPayload]:
        """The next word of a side; :class:`NotTaken` on the caller's cancel or the timeout."""
        try:
            async with asyncio.timeout(timeout):
                side, said = await call.said.get()
        except TimeoutError:
            no_answer = Reason("the citizen did not answer", "contact_no_answer")
            raise NotTaken("unanswered", no_answer) from None
        if side == "request":
            raise NotTaken("cancelled", Reason("cancelled on the TV", "ring_cancelled"))
        return side, said

    async def _ask_offer(self, call: TvToTvCall, relay: RelayClaim | None, now: float) -> str:
        """Ask the calling unit for its offer; the offer's SDP."""
        claims = ticket_claims(self.limits, call, "caller", "", relay, now)
        await self._issued(call, claims, "offer")
        ask = SignalPayload(
            kind="request",
            call_id=call.caller_cid,
            state=OFFER_STATE,
            callee=call.request.request_id,
            ticket=sign_ticket(claims, self.ticket_key),
        )
        await self._send(call.request.unit, ask)
        deadline = time.monotonic() + OFFER_TIMEOUT_S
        while True:
            side, said = await self._next(call, max(deadline - time.monotonic(), 0.01))
            if side == "caller" and said.kind == "offer" and said.sdp:
                return said.sdp
            if side == "caller" and said.kind in ("error", "hangup"):
                why = said.reason or said.kind
                raise NotTaken(
                    "refused",
                    Reason(f"the calling TV could not make the call: {why}", "tv_cannot_call"),
                )

    async def _ring(self, call: TvToTvCall, offer: str) -> tuple[str, str]:
        """Ring the callee's TV with the caller's offer; its answer and the answer's
        fingerprint."""
        peer, now = call.peer, time.time()
        try:
            fp = preferred_fingerprint(check_sdp(offer))
        except BadMessage as err:
            raise NotTaken(
                "refused", Reason(f"bad offer from the calling TV: {err}", None)
            ) from None
        expires_at = int(now) + self.limits.ticket_ttl_s
        credential = await self.relay.mint(call.callee_cid, "unit", expires_at, now)
        claims = ticket_claims(self.limits, call, "callee", fp, relay_claim(credential), now)
        await self._issued(call, claims, "ring")
        ring_s = self.limits.ring_timeout_s
        await self._send(
            peer.callee_unit,
            SignalPayload(
                kind="offer",
                call_id=call.callee_cid,
                ticket=sign_ticket(claims, self.ticket_key),
                sdp=offer,
                ring_s=ring_s,
            ),
        )
        deadline, told = time.monotonic() + ring_s + RING_GRACE_S, False
        try:
            while True:
                side, said = await self._next(call, max(deadline - time.monotonic(), 0.01))
                if side != "callee":
                    continue
                if said.kind == "state" and said.state == "ringing" and not told:
                    told = True
                    await self._rang(call)
                elif said.kind == "answer" and said.sdp:
                    try:
                        return said.sdp, preferred_fingerprint(check_sdp(said.sdp))
                    except BadMessage as err:
                        bad = Reason(f"bad answer from the called TV: {err}", None)
                        raise NotTaken("refused", bad) from None
                elif said.kind in ("error", "hangup"):
                    raise NotTaken(*refusal(said, peer.callee.display_name))
        except NotTaken:
            hangup = SignalPayload(kind="hangup", call_id=call.callee_cid, reason="cancelled")
            await self._send(peer.callee_unit, hangup)
            raise

    async def _rang(self, call: TvToTvCall) -> None:
        request = call.request
        await asyncio.to_thread(self.book.rung, request.request_id, time.time())
        await self._audit(
            "contact_call_rang",
            unit=request.unit,
            call_id=request.request_id,
            purpose=CONTACT_PURPOSE,
            contact=request.callee,
            instance=self.identity,
            callee_unit=call.peer.callee_unit,
        )
        said = SignalPayload(kind="state", call_id=request.request_id, state="ringing")
        await self._send(request.unit, said)

    async def _not_taken(self, call: TvToTvCall, ended: NotTaken) -> None:
        """Settle the request: the calling unit hears why (unless it cancelled)."""
        request = call.request
        if not await asyncio.to_thread(
            self.book.finish, request.request_id, ended.state, to_column(ended.reason)
        ):
            return
        await self._audit(
            f"contact_call_{ended.state}",
            unit=request.unit,
            call_id=request.request_id,
            purpose=CONTACT_PURPOSE,
            contact=request.callee,
            reason=str(ended.reason),
        )
        if ended.state != "cancelled":
            said = SignalPayload(
                kind="error",
                call_id=request.request_id,
                state=UNAVAILABLE,
                reason=str(ended.reason)[:200],
            )
            await self._send(request.unit, said)

    async def _accept(self, call: TvToTvCall) -> None:
        """The callee took the call: win the request's row (the caller may have cancelled in
        the same moment; then the callee's side is hung up)."""
        request, peer = call.request, call.peer
        won = await asyncio.to_thread(
            self.book.accept,
            request.request_id,
            peer.callee.contact_id,
            peer.callee.display_name,
            time.time(),
        )
        if not won:
            hangup = SignalPayload(kind="hangup", call_id=call.callee_cid, reason="cancelled")
            await self._send(peer.callee_unit, hangup)
            raise NotTaken("cancelled", Reason("cancelled on the TV", "ring_cancelled"))
        await self._audit(
            "contact_call_accepted",
            actor=peer.caller.contact_id,
            unit=peer.callee_unit,
            call_id=request.request_id,
            purpose=CONTACT_PURPOSE,
            citizen=peer.caller.citizen_id,
        )

    async def _connect(
        self, call: TvToTvCall, answer: str, fp: str, relay: RelayClaim | None
    ) -> None:
        """The caller gets the callee's answer with a ticket naming its fingerprint."""
        claims = ticket_claims(self.limits, call, "caller", fp, relay, time.time())
        await self._issued(call, claims, "answer")
        said = SignalPayload(
            kind="answer",
            call_id=call.caller_cid,
            sdp=answer,
            ticket=sign_ticket(claims, self.ticket_key),
        )
        await self._send(call.request.unit, said)

    async def _follow(self, call: TvToTvCall) -> None:
        """Until one side hangs up: relay it to the other, then write the call's one entry."""
        answered = time.time()
        limit = call.peer.max_s + RING_GRACE_S
        first, reason = "central", "maximum duration reached"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while True:
                    side, said = await call.said.get()
                    if side != "request" and said.kind in ("hangup", "error"):
                        first, reason = side, said.reason or said.kind
                        break
        ended = time.time()
        units = {"caller": call.request.unit, "callee": call.peer.callee_unit}
        cids = {"caller": call.caller_cid, "callee": call.callee_cid}
        for side in ("caller", "callee"):
            if side != first:
                hangup = SignalPayload(
                    kind="hangup", call_id=cids[side], reason=f"the other TV hung up ({reason})"
                )
                await self._send(units[side], hangup)
        await self._audit(
            "tv_to_tv_call_ended",
            actor=call.peer.caller.contact_id,
            unit=call.request.unit,
            purpose=CONTACT_PURPOSE,
            call_id=call.caller_cid,
            request=call.request.request_id,
            caller_citizen=call.request.citizen,
            callee_citizen=call.peer.caller.citizen_id,
            callee_unit=call.peer.callee_unit,
            callee_call_id=call.callee_cid,
            started_at=round(answered, 3),
            duration_s=round(ended - answered, 3),
            ended_by=first,
            reason=reason[:200],
        )
