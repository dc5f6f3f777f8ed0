"""A call this unit places: the citizen pressed another citizen on the People screen.

Every other call reaches the unit as an offer it answers. A call to another citizen's TV has
to be offered by one of the two units, and the caller's is the one that makes it:

1. the unit sent its ``request`` (:class:`~vaka.agent.call.request.CitizenRequest`) and is
   ``requesting``; central asks for the offer with a ``request`` whose ``state`` is ``offer``,
   whose ``callee`` is that request and whose ticket (:meth:`OfferGuard.check_call_request`)
   names the call and the request and carries this unit's relay credential;
2. the unit makes the offer with the presence channel (:meth:`CallSession.offer`) and sends it
   as an ``offer``; the camera does not run, the unit stays ``requesting`` ("Calling Karl …")
   while the other TV rings;
3. the other TV's ``answer`` comes with a ticket naming its DTLS fingerprint, this call and the
   request; :meth:`OfferGuard.check` checks it as it checks any offer's, then the call comes up
   as every call does: DTLS with that fingerprint, the other side's heartbeat, then the camera.

If the request ends first (the other TV declined, nobody answered, the citizen cancelled) the
offer is dropped without a trace on the unit: no camera ran.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from vaka.agent.call.guard import OfferGuard, OfferRefused
from vaka.agent.call.request import CitizenRequest
from vaka.agent.call.signals import CallSignals
from vaka.agent.call.state import UnitCall
from vaka.protocol.messages import SignalPayload
from vaka.provisioning.tickets import TicketClaims

if TYPE_CHECKING:
    from vaka.agent.call.session import CallSession

log = logging.getLogger(__name__)

#: the ``state`` of central's ``request`` that asks this unit for the offer
OFFER_STATE = "offer"

NewSession = Callable[[TicketClaims], "CallSession"]
Refuse = Callable[[str, str], Awaitable[None]]


class OutgoingCall:
    """The unit's one offer in flight, from central's ask to the other TV's answer."""

    def __init__(
        self,
        guard: OfferGuard,
        request: CitizenRequest,
        state: UnitCall,
        signals: CallSignals,
        new_session: NewSession,
        refuse: Refuse,
    ) -> None:
        self.guard = guard
        self.request = request
        self.state = state
        self.signals = signals
        self.new_session = new_session
        self.refuse = refuse
        self.call_id: str | None = None
        self.session: CallSession | None = None
        self._dropping: asyncio.Task[None] | None = None

    async def offer(self, p: SignalPayload) -> None:
        """Central asks for the offer of the citizen's open request: make it and send it."""
        pending = self.request.pending
        if pending is None or self.request.callee is None or p.callee != pending:
            await self.refuse(p.call_id, "no call request of the citizen is open for it")
            return
        if self.session is not None:
            await self.refuse(p.call_id, "busy: an offer is already out")
            return
        try:
            claims = self.guard.check_call_request(p.call_id, p.ticket)
        except OfferRefused as err:
            await self.refuse(p.call_id, str(err))
            return
        if claims.req != pending:
            await self.refuse(p.call_id, "the ticket is for another call request")
            return
        session = self.new_session(claims)
        self.call_id, self.session = p.call_id, session
        try:
            sdp = await session.offer()
        except Exception as err:
            log.exception("call %s: no offer could be made", p.call_id)
            await self.drop()
            await self.refuse(p.call_id, f"could not make the offer: {err}")
            return
        if self.session is not session:
            return  # dropped while the offer was being made
        await self.signals.signal(SignalPayload(kind="offer", call_id=p.call_id, sdp=sdp))
        self._drop_when_closed(pending, session)

    def _drop_when_closed(self, request_id: str, session: CallSession) -> None:
        """Drop the offer once the request it belongs to is no longer open (the citizen
        cancelled, or the unit gave up); forget it once answered."""

        def changed(_phase: object) -> None:
            if self.session is not session:
                unsubscribe()
            elif self.request.pending != request_id:
                unsubscribe()
                self._dropping = asyncio.get_running_loop().create_task(self.drop())

        unsubscribe = self.state.subscribe(changed)
        if self.request.pending != request_id:
            changed(None)

    async def answer(self, p: SignalPayload) -> CallSession | None:
        """The other TV's answer with its ticket: the session, now ``connecting`` (``None``:
        refused, the reason went back)."""
        session, pending = self.session, self.request.pending
        if session is None or p.call_id != self.call_id:
            await self.refuse(p.call_id, "no offer of this unit is out for it")
            return None
        try:
            claims = self.guard.check(p.call_id, p.ticket, p.sdp)
            if pending is None or claims.req != pending:
                raise OfferRefused("the citizen's call request is no longer open")
        except OfferRefused as err:
            await self.drop()
            await self.refuse(p.call_id, str(err))
            return None
        self.session, self.call_id = None, None
        self.state.connecting(session)
        assert p.sdp is not None
        try:
            await session.accept(p.sdp, claims, self.guard.duration_limit(claims))
        except Exception as err:
            log.exception("call %s could not start", p.call_id)
            await session.end(f"could not start: {err}")
        return session

    async def drop(self) -> None:
        """Drop the offer in flight, if any (no camera ran)."""
        session, self.session, self.call_id = self.session, None, None
        if session is not None:
            await session.discard()
