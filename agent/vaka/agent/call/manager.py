"""Routes call signalling on the unit: at most one call at a time, every refusal explained.

A profile that rings (the TV) is asked through its :class:`~vaka.agent.call.observer.CallObserver`
before a verified call is taken; the unit tells central ``ringing`` meanwhile, and a caller who
hangs up stops the ringing. The citizen's own call request (the night-staff button,
:class:`~vaka.agent.call.request.CitizenRequest`) is answered by a ``citizen_call`` offer naming
the request, which is taken at once.

The manager keeps the unit's call state (:class:`~vaka.agent.call.state.UnitCall`) up to date;
the TV controller reads the same object. Refusals go back to central on ``signal/out`` (so the
caller sees why) and as an event (so the audit trail records it). A call does not depend on the
broker link: it lives while its viewer answers on the call's own media path
(:mod:`~vaka.agent.call.presence`), so a broker that dies does not cut a night check short and a
broker that freezes does not keep a camera open. The composition routes ``signal/in`` to
:meth:`CallManager.on_signal` and link changes to :meth:`CallManager.link_changed`.

The media stack is imported by the first call (:meth:`CallManager._take`), so that an idle unit
does not carry it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from vaka.agent.call.guard import OfferGuard, OfferRefused
from vaka.agent.call.observer import CallObserver
from vaka.agent.call.presence import MediaDeadlines
from vaka.agent.call.request import CitizenRequest
from vaka.agent.call.signals import CallSignals
from vaka.agent.call.state import CallPhase, UnitCall
from vaka.agent.hw.hardware import Hardware
from vaka.agent.media.settings import MediaSettings
from vaka.agent.memory import release_memory
from vaka.protocol.messages import AnyMessage, SignalMessage, SignalPayload
from vaka.provisioning.tickets import TicketClaims

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack

    from vaka.agent.call.session import CallSession

log = logging.getLogger(__name__)


class _Tracking(CallObserver):
    """A session's observer: tells the profile's observer first, then moves the unit's state."""

    def __init__(self, state: UnitCall, observer: CallObserver) -> None:
        self.state = state
        self.observer = observer

    def extra_tracks(self, claims: TicketClaims, offered: frozenset[str]) -> list[MediaStreamTrack]:
        return self.observer.extra_tracks(claims, offered)

    def remote_track(self, session: CallSession, track: MediaStreamTrack) -> None:
        self.observer.remote_track(session, track)

    def call_connected(self, session: CallSession) -> None:
        self.observer.call_connected(session)
        if self.state.session is session:
            self.state.in_call(session)

    def call_ended(self, session: CallSession) -> None:
        try:
            self.observer.call_ended(session)
        finally:
            if self.state.session is session:
                self.state.idle(f"{session.claims.purpose}: {session.end_reason}")


class CallManager:
    """The unit's call handling."""

    def __init__(
        self,
        signals: CallSignals,
        guard: OfferGuard,
        hardware: Hardware,
        media: MediaSettings,
        state: UnitCall,
        request: CitizenRequest | None = None,
        observer: CallObserver | None = None,
        deadlines: MediaDeadlines | None = None,
    ) -> None:
        self.signals = signals
        self.guard = guard
        self.hardware = hardware
        self.media = media
        self.state = state
        self.request = request
        self.observer = observer or CallObserver()
        self.deadlines = deadlines or MediaDeadlines()
        self._ring_task: asyncio.Task[str | None] | None = None
        self._online = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def session(self) -> CallSession | None:
        """The call under way (connecting or in call), if any."""
        return self.state.session

    @property
    def last_result(self) -> str | None:
        """How the last call ended, or why it was refused."""
        return self.state.last_result

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refuse(self, call_id: str, reason: str, **extra: Any) -> None:
        log.warning("call %s refused: %s", call_id, reason)
        self.state.last_result = f"refused: {reason}"[:200]
        await self.signals.signal(SignalPayload(kind="error", call_id=call_id, reason=reason[:200]))
        await self.signals.event(
            "call", {"action": "refused", "call_id": call_id, "reason": reason[:200], **extra}
        )

    async def on_signal(self, message: AnyMessage) -> None:
        """Handle one ``signal/in`` message."""
        assert isinstance(message, SignalMessage)
        p = message.payload
        pending = self.request.pending if self.request is not None else None
        if p.call_id == pending and p.kind in ("state", "error", "hangup"):
            self.observer.request_update(p.call_id, p.kind, p.state, p.reason)
            if p.kind != "state":
                self.state.idle()
        elif p.kind == "offer":
            await self._offer(p)
        elif p.kind == "hangup":
            session = self.session
            if session is not None and session.call_id == p.call_id:
                await session.end(f"hung up by caller ({p.reason or 'no reason given'})")
            elif self._ringing(p.call_id) and self._ring_task is not None:
                self._ring_task.cancel()
        else:
            await self._refuse(p.call_id, f"unexpected {p.kind!r} message")

    def _ringing(self, call_id: str) -> bool:
        return self.state.phase is CallPhase.RINGING and self.state.call_id == call_id

    async def _offer(self, p: SignalPayload) -> None:
        if self.state.phase not in (CallPhase.IDLE, CallPhase.REQUESTING):
            await self._refuse(p.call_id, "busy: another call is in progress")
            return
        try:
            claims = self.guard.check(p.call_id, p.ticket, p.sdp)
        except OfferRefused as err:
            await self._refuse(p.call_id, str(err))
            return
        pending = self.request.pending if self.request is not None else None
        if claims.purpose == "citizen_call":
            if claims.req is None or claims.req != pending:
                await self._refuse(p.call_id, "no call request from the citizen is open for it")
                return
        elif pending is not None:
            await self._refuse(p.call_id, "busy: the citizen is calling the night staff")
            return
        elif self.observer.rings and not await self._answered(p.call_id, claims):
            return
        await self._take(p, claims)

    async def _answered(self, call_id: str, claims: TicketClaims) -> bool:
        """Ring; ``False`` (and the caller told why) if the call was not taken."""
        declined = await self._ring(call_id, claims)
        if declined is None:
            return True
        log.info("call %s not taken: %s", call_id, declined)
        self.state.idle(f"{claims.purpose}: {declined}")
        await self.signals.hangup(call_id, declined)
        detail = {
            "action": "declined",
            "call_id": call_id,
            "caller": claims.sub,
            "purpose": claims.purpose,
            "reason": declined[:200],
        }
        await self.signals.event("call", detail)
        return False

    async def _take(self, p: SignalPayload, claims: TicketClaims) -> None:
        # The media stack (aiortc, PyAV, OpenCV: tens of MB) is loaded by the first call, not
        # by an idle unit; its process-wide settings go with it.
        from vaka.agent.call.session import CallSession
        from vaka.agent.media.settings import apply_process_settings

        apply_process_settings(self.media)
        session = CallSession(
            claims,
            self.guard.duration_limit(claims),
            self.hardware,
            self.media,
            self.signals.event,
            self.signals.hangup,
            _Tracking(self.state, self.observer),
            self.deadlines,
        )
        self.state.connecting(session)
        try:
            assert p.sdp is not None
            answer = await session.start(p.sdp)
        except Exception as err:
            log.exception("call %s could not start", p.call_id)
            await session.end(f"could not start: {err}")
            return
        # "started" is the session's to report, once media flows.
        await self.signals.signal(SignalPayload(kind="answer", call_id=p.call_id, sdp=answer))
        self._background(self._release_when_ended(session))

    async def _ring(self, call_id: str, claims: TicketClaims) -> str | None:
        """Ring on the unit until the observer decides; ``None`` takes the call."""
        self.state.ringing(call_id, claims.purpose)
        await self.signals.signal(
            SignalPayload(kind="state", call_id=call_id, state="ringing", reason="ringing")
        )
        self._ring_task = asyncio.get_running_loop().create_task(self.observer.admit(claims))
        try:
            return await self._ring_task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                self.state.idle()
                raise
            return "the caller hung up before it was answered"
        finally:
            self._ring_task = None

    async def _release_when_ended(self, session: CallSession) -> None:
        await session.ended.wait()
        del session
        await asyncio.sleep(1.0)  # let aiortc's own tasks of the call finish first
        if self.session is None:
            release_memory()

    def link_changed(self, online: bool) -> None:
        """The broker link went up or down. A call under way goes on either way: its viewer's
        presence is proven on the media path, and its events wait for the link."""
        session, was_online, self._online = self.session, self._online, online
        if session is not None and was_online and not online:
            log.warning("call %s goes on without the broker link", session.call_id)

    async def close(self) -> None:
        """End any call (the agent is stopping)."""
        if self._ring_task is not None:
            self._ring_task.cancel()
        if self.session is not None:
            await self.session.end("agent stopping")
