"""Routes call signalling on the unit: at most one call at a time, every refusal explained.

A profile that rings (the TV) is asked through its :class:`~vaka.agent.call.observer.CallObserver`
before a verified call is taken; the unit tells central ``ringing`` meanwhile, and a caller who
hangs up stops the ringing. The citizen's own call request (the night-staff button) goes out
from here too: :meth:`CallManager.request_staff`; only a ``citizen_call`` ticket naming that
request is taken for it, at once.

Refusals go back to central on ``signal/out`` (so the caller sees why) and as an event (so the
audit trail records it). When the broker link is lost, a running call ends: without signalling
nobody could hang it up.
"""

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Coroutine
from typing import Any

from vaka.agent.call.guard import OfferGuard, OfferRefused
from vaka.agent.call.observer import CallObserver
from vaka.agent.call.session import CallSession
from vaka.agent.hw.hardware import Hardware
from vaka.agent.link import LinkState, UnitLink
from vaka.agent.media.settings import MediaSettings
from vaka.agent.memory import release_memory
from vaka.errors import LinkError
from vaka.protocol.messages import (
    AnyMessage,
    EventMessage,
    EventPayload,
    SignalMessage,
    SignalPayload,
)
from vaka.protocol.topics import Channel
from vaka.provisioning.tickets import TicketClaims

log = logging.getLogger(__name__)


class CallManager:
    """The unit's call handling, attached to its link."""

    def __init__(
        self,
        link: UnitLink,
        guard: OfferGuard,
        hardware: Hardware,
        media: MediaSettings,
        observer: CallObserver | None = None,
    ) -> None:
        self.link = link
        self.observer = observer or CallObserver()
        #: The call ringing on the unit now (its id), and what rings it.
        self.ringing: str | None = None
        self._ring_task: asyncio.Task[str | None] | None = None
        #: The citizen's open call request to the night staff (its id), if any.
        self.pending_request: str | None = None
        self.guard = guard
        self.hardware = hardware
        self.media = media
        self.session: CallSession | None = None
        self.last_result: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        link.on(Channel.SIGNAL_IN, self.on_signal)
        link.subscribe_state(self._on_link_state)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _event(self, kind: str, detail: dict[str, Any]) -> None:
        clean = {k: v for k, v in detail.items() if v is not None}
        event = EventMessage(payload=EventPayload(kind=kind, detail=clean))
        await self.link.publish_reliably(Channel.EVENTS, event)

    async def _signal(self, payload: SignalPayload) -> None:
        with contextlib.suppress(LinkError):
            await self.link.publish(Channel.SIGNAL_OUT, SignalMessage(payload=payload))

    async def _hangup(self, call_id: str, reason: str) -> None:
        await self._signal(SignalPayload(kind="hangup", call_id=call_id, reason=reason[:200]))

    async def _refuse(self, call_id: str, reason: str, **extra: Any) -> None:
        log.warning("call %s refused: %s", call_id, reason)
        self.last_result = f"refused: {reason}"[:200]
        await self._signal(SignalPayload(kind="error", call_id=call_id, reason=reason[:200]))
        await self._event(
            "call", {"action": "refused", "call_id": call_id, "reason": reason[:200], **extra}
        )

    async def on_signal(self, message: AnyMessage) -> None:
        """Handle one ``signal/in`` message."""
        assert isinstance(message, SignalMessage)
        p = message.payload
        if p.call_id == self.pending_request and p.kind in ("state", "error", "hangup"):
            if p.kind != "state":
                self.pending_request = None
            self.observer.request_update(p.call_id, p.kind, p.state, p.reason)
        elif p.kind == "offer":
            await self._offer(p)
        elif p.kind == "hangup":
            session = self.session
            if session is not None and session.call_id == p.call_id:
                await session.end(f"hung up by caller ({p.reason or 'no reason given'})")
            elif p.call_id == self.ringing and self._ring_task is not None:
                self._ring_task.cancel()
        else:
            await self._refuse(p.call_id, f"unexpected {p.kind!r} message")

    async def request_staff(self) -> str:
        """Send the citizen's call request to central; returns its id. Central answers with
        ``state``/``error`` messages (to the observer's :meth:`~CallObserver.request_update`) and,
        when a night-staff member accepts, with a ``citizen_call`` offer naming the request.

        :raises LinkError: the unit is offline, or busy with a call.
        """
        if self.session is not None or self.ringing is not None:
            raise LinkError("busy: a call is in progress")
        request_id = f"{self.guard.device_id}.{secrets.token_hex(6)}"
        self.pending_request = request_id
        message = SignalMessage(
            payload=SignalPayload(kind="request", call_id=request_id, state="citizen_call")
        )
        try:
            await self.link.publish(Channel.SIGNAL_OUT, message)
        except LinkError:
            self.pending_request = None
            raise
        log.info("citizen call request %s sent", request_id)
        await self._event(
            "call", {"action": "requested", "call_id": request_id, "purpose": "citizen_call"}
        )
        return request_id

    async def cancel_request(self, reason: str) -> None:
        """Withdraw the citizen's open call request (they pressed Cancel, or gave up)."""
        request_id, self.pending_request = self.pending_request, None
        if request_id is None:
            return
        await self._signal(SignalPayload(kind="hangup", call_id=request_id, reason=reason[:200]))
        await self._event(
            "call", {"action": "cancelled", "call_id": request_id, "reason": reason[:200]}
        )

    async def _offer(self, p: SignalPayload) -> None:
        if self.session is not None or self.ringing is not None:
            await self._refuse(p.call_id, "busy: another call is in progress")
            return
        try:
            claims = self.guard.check(p.call_id, p.ticket, p.sdp)
        except OfferRefused as err:
            await self._refuse(p.call_id, str(err))
            return
        if claims.purpose == "citizen_call":
            request = claims.req
            if request is None or request != self.pending_request:
                await self._refuse(p.call_id, "no call request from the citizen is open for it")
                return
            self.pending_request = None
        elif self.observer.rings:
            declined = await self._ring(p.call_id, claims)
            if declined is not None:
                log.info("call %s not taken: %s", p.call_id, declined)
                self.last_result = f"{claims.purpose}: {declined}"[:200]
                await self._hangup(p.call_id, declined)
                await self._event(
                    "call",
                    {
                        "action": "declined",
                        "call_id": p.call_id,
                        "caller": claims.sub,
                        "purpose": claims.purpose,
                        "reason": declined[:200],
                    },
                )
                return
        session = CallSession(
            claims,
            self.guard.duration_limit(claims),
            self.hardware,
            self.media,
            self._event,
            self._hangup,
            self.observer,
        )
        self.session = session
        try:
            assert p.sdp is not None
            answer = await session.start(p.sdp)
        except Exception as err:
            log.exception("call %s could not start", p.call_id)
            await session.end(f"could not start: {err}")
            self.session = None
            return
        await self._signal(SignalPayload(kind="answer", call_id=p.call_id, sdp=answer))
        await session.report_started()
        self._background(self._forget_when_ended(session))

    async def _ring(self, call_id: str, claims: TicketClaims) -> str | None:
        """Ring on the unit until the observer decides; ``None`` takes the call."""
        self.ringing = call_id
        await self._signal(
            SignalPayload(kind="state", call_id=call_id, state="ringing", reason="ringing")
        )
        self._ring_task = asyncio.get_running_loop().create_task(self.observer.admit(claims))
        try:
            return await self._ring_task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return "the caller hung up before it was answered"
        finally:
            self.ringing = None
            self._ring_task = None

    async def _forget_when_ended(self, session: CallSession) -> None:
        await session.ended.wait()
        self.last_result = f"{session.claims.purpose}: {session.end_reason}"[:200]
        if self.session is session:
            self.session = None
        del session
        await asyncio.sleep(1.0)  # let aiortc's own tasks of the call finish first
        if self.session is None:
            release_memory()

    def _on_link_state(self, state: LinkState) -> None:
        session = self.session
        if session is not None and state is not LinkState.ONLINE:
            self._background(session.end("broker link lost"))

    async def close(self) -> None:
        """End any call (the agent is stopping)."""
        if self._ring_task is not None:
            self._ring_task.cancel()
        if self.session is not None:
            await self.session.end("agent stopping")
