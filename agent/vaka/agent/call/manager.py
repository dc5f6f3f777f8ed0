"""Routes call signalling on the unit: at most one call at a time, every refusal explained.

A profile that rings (the TV) is asked through its :class:`~vaka.agent.call.observer.CallObserver`
before a verified call is taken; the unit tells central ``ringing`` meanwhile. Ringing is a task of
its own with its own deadline (the offer's ``ring_s``, else :data:`RING_S`): :meth:`on_signal`
returns at once, so that the unit keeps handling signalling, messages and configuration while a
call rings. The unit stops ringing by itself when the deadline passes ("no answer after 30 s"), at
once when the caller cancels, and a second call while one rings or runs is refused as busy.

The citizen's own call request (the night-staff button, or a person on the People screen,
:class:`~vaka.agent.call.request.CitizenRequest`) is answered by an offer naming the request
(``citizen_call`` from the staff, ``contact_call`` from the person), which is taken at once.

The manager keeps the unit's call state (:class:`~vaka.agent.call.state.UnitCall`) up to date;
the TV controller reads the same object. Refusals go back to central on ``signal/out`` (so the
caller sees why) and as an event (so the audit trail records it). A call does not depend on the
broker link: it lives while its viewer answers on the call's own media path
(:mod:`~vaka.agent.call.presence`), so a broker that dies does not cut a night check short and a
broker that freezes does not keep a camera open. The composition routes ``signal/in`` to
:meth:`CallManager.on_signal` and link changes to :meth:`CallManager.link_changed`.

A night check's picture is blurred on the unit until central sends a signed escalation for that
very call (:mod:`vaka.provisioning.escalation`); the manager checks it against the call's ticket
and only then lets the session's view gate go ``clear``. A forged or misdirected escalation is
refused: the caller is told (a ``state`` that stays ``blurred``, with the reason) and the
refusal is an event for the audit trail.

A call the citizen places to another citizen's TV is offered by this unit
(:class:`~vaka.agent.call.outgoing.OutgoingCall`): central asks for the offer, the other TV's
answer comes back with a ticket naming its fingerprint.

The media stack is imported by the first call (:meth:`CallManager._prepare`), so that an idle unit
does not carry it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from vaka.agent.call.guard import OfferGuard, OfferRefused
from vaka.agent.call.observer import CallObserver
from vaka.agent.call.outgoing import OFFER_STATE, OutgoingCall
from vaka.agent.call.presence import MediaDeadlines
from vaka.agent.call.request import CitizenRequest
from vaka.agent.call.signals import CallSignals
from vaka.agent.call.state import CallPhase, UnitCall
from vaka.agent.hw.hardware import Hardware
from vaka.agent.media.settings import MediaSettings
from vaka.agent.memory import release_memory
from vaka.protocol.messages import AnyMessage, CallOutcome, SignalMessage, SignalPayload
from vaka.provisioning.escalation import BadEscalation, verify_escalation
from vaka.provisioning.tickets import TicketClaims

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack

    from vaka.agent.call.session import CallSession

log = logging.getLogger(__name__)

#: How long a call rings when its offer does not say (central's ``[calls] ring_timeout_s``).
RING_S = 30.0


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
        self._ring_task: asyncio.Task[None] | None = None
        self._admit: asyncio.Task[str | None] | None = None
        self._online = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: a call the citizen places to another citizen's TV (this unit makes the offer)
        self.outgoing = (
            None
            if request is None
            else OutgoingCall(guard, request, state, signals, self._new_session, self._refuse)
        )

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

    async def _refuse(
        self, call_id: str, reason: str, outcome: CallOutcome | None = None, **extra: Any
    ) -> None:
        log.warning("call %s refused: %s", call_id, reason)
        self.state.last_result = f"refused: {reason}"[:200]
        await self.signals.signal(
            SignalPayload(kind="error", call_id=call_id, reason=reason[:200], outcome=outcome)
        )
        await self.signals.event(
            "call", {"action": "refused", "call_id": call_id, "reason": reason[:200], **extra}
        )

    async def on_signal(self, message: AnyMessage) -> None:
        """Handle one ``signal/in`` message; returns at once (a call rings and starts in a task
        of its own)."""
        assert isinstance(message, SignalMessage)
        p = message.payload
        pending = self.request.pending if self.request is not None else None
        if p.call_id == pending and p.kind in ("state", "error", "hangup"):
            self.observer.request_update(p.call_id, p.kind, p.state, p.reason)
            if p.kind != "state":
                self.state.idle()
                if self.outgoing is not None:
                    await self.outgoing.drop()
        elif p.kind == "request" and p.state == OFFER_STATE and self.outgoing is not None:
            self._background(self.outgoing.offer(p))
        elif p.kind == "answer" and self.outgoing is not None:
            session = await self.outgoing.answer(p)
            if session is not None:
                self._background(self._release_when_ended(session))
        elif p.kind == "offer":
            await self._offer(p)
        elif p.kind == "escalate":
            await self._escalate(p)
        elif p.kind == "hangup":
            session = self.session
            if session is not None and session.call_id == p.call_id:
                await session.end(f"hung up by caller ({p.reason or 'no reason given'})")
            elif self._ringing(p.call_id) and self._admit is not None:
                log.info("call %s cancelled by the caller while ringing", p.call_id)
                self._admit.cancel()
            elif self.outgoing is not None and self.outgoing.call_id == p.call_id:
                await self.outgoing.drop()
        else:
            await self._refuse(p.call_id, f"unexpected {p.kind!r} message")

    async def _escalate(self, p: SignalPayload) -> None:
        """Make the call's view clear if ``p`` carries central's escalation for it; else refuse."""
        session = self.session
        if session is None or session.call_id != p.call_id:
            reason = "escalation refused: no such call under way"
            log.warning("call %s: %s", p.call_id, reason)
            await self.signals.signal(
                SignalPayload(kind="state", call_id=p.call_id, state="blurred", reason=reason)
            )
            return
        try:
            verify_escalation(p.ticket, self.guard.ticket_key, session.claims)
        except BadEscalation as err:
            reason = f"escalation refused: {err}"[:200]
            log.warning("call %s: %s", p.call_id, reason)
            await self.signals.signal(
                SignalPayload(
                    kind="state", call_id=p.call_id, state=session.view.level, reason=reason
                )
            )
            detail = {"action": "escalation_refused", "call_id": p.call_id, "reason": reason}
            await self.signals.event("call", detail)
            return
        changed = session.view.clear()
        await self.signals.signal(
            SignalPayload(kind="state", call_id=p.call_id, state="clear", reason="escalated")
        )
        if changed:
            detail = {"action": "view_changed", "call_id": p.call_id, "view": "clear"}
            await self.signals.event("call", detail)

    def _ringing(self, call_id: str) -> bool:
        return self.state.phase is CallPhase.RINGING and self.state.call_id == call_id

    async def _offer(self, p: SignalPayload) -> None:
        """Check the offer and take it, ring for it or refuse it. Everything up to the new call
        state happens without waiting, so that a second offer right behind it finds the unit
        busy; the ringing and the peer connection's set-up run in tasks."""
        if self.state.phase not in (CallPhase.IDLE, CallPhase.REQUESTING):
            await self._refuse(p.call_id, "busy: another call is in progress", "busy")
            return
        try:
            claims = self.guard.check(p.call_id, p.ticket, p.sdp)
        except OfferRefused as err:
            await self._refuse(p.call_id, str(err))
            return
        pending = self.request.pending if self.request is not None else None
        if claims.purpose == "citizen_call" or (pending is not None and claims.req == pending):
            # The answer to the citizen's own request (to the staff, or to one of their people)
            # is taken at once: the citizen is waiting for it.
            if claims.req is None or claims.req != pending:
                await self._refuse(p.call_id, "no call request from the citizen is open for it")
                return
        elif pending is not None:
            await self._refuse(p.call_id, "busy: the citizen is calling the night staff", "busy")
            return
        elif self.observer.rings:
            self.state.ringing(p.call_id, claims.purpose)
            loop = asyncio.get_running_loop()
            # Both tasks exist before this handler returns: a hang-up right behind the offer
            # finds the ringing to cancel.
            self._admit = loop.create_task(self.observer.admit(claims), name=f"admit-{p.call_id}")
            ring = loop.create_task(
                self._ring_then_take(p, claims, self._admit), name=f"ring-{p.call_id}"
            )
            self._ring_task = ring
            ring.add_done_callback(self._ring_done)
            return
        self._take(p, claims)

    def _ring_done(self, task: asyncio.Task[None]) -> None:
        if self._ring_task is task:
            self._ring_task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("ringing call failed: %s", task.exception())

    async def _ring_then_take(
        self, p: SignalPayload, claims: TicketClaims, admit: asyncio.Task[str | None]
    ) -> None:
        """Ring until the citizen decides, the deadline passes or the caller cancels; then take
        the call, or tell the caller why not."""
        ring_s = p.ring_s or RING_S
        declined = await self._ring(p.call_id, admit, ring_s)
        if declined is None:
            if self._ringing(p.call_id):
                self._take(p, claims)
            return
        reason, outcome = declined
        log.info("call %s not taken: %s", p.call_id, reason)
        if self._ringing(p.call_id):
            self.state.idle(f"{claims.purpose}: {reason}")
        await self.signals.signal(
            SignalPayload(kind="hangup", call_id=p.call_id, reason=reason[:200], outcome=outcome)
        )
        detail = {
            "action": "declined",
            "call_id": p.call_id,
            "caller": claims.sub,
            "purpose": claims.purpose,
            "reason": reason[:200],
            "outcome": outcome,
        }
        await self.signals.event("call", detail)

    def _take(self, p: SignalPayload, claims: TicketClaims) -> None:
        """Take the call: the unit is ``connecting`` now, the answer follows from a task."""
        try:
            session = self._prepare(claims)
        except Exception as err:
            log.exception("call %s could not be set up", p.call_id)
            self.state.idle(f"{claims.purpose}: could not start: {err}")
            self._background(self._refuse(p.call_id, f"could not start: {err}"))
            return
        self._background(self._start(session, p))

    def _prepare(self, claims: TicketClaims) -> CallSession:
        """The call's session, and the unit ``connecting`` (without waiting)."""
        session = self._new_session(claims)
        self.state.connecting(session)
        return session

    def _new_session(self, claims: TicketClaims) -> CallSession:
        """A new call session (the media stack loads with the first)."""
        # The media stack (aiortc, PyAV, OpenCV: tens of MB) is loaded by the first call, not
        # by an idle unit; its process-wide settings go with it.
        from vaka.agent.call.session import CallSession
        from vaka.agent.media.settings import apply_process_settings

        apply_process_settings(self.media)
        return CallSession(
            claims,
            self.guard.duration_limit(claims),
            self.hardware,
            self.media,
            self.signals.event,
            self.signals.hangup,
            _Tracking(self.state, self.observer),
            self.deadlines,
            self.signals.signal,
        )

    async def _start(self, session: CallSession, p: SignalPayload) -> None:
        """Answer the offer; the session reports the rest."""
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

    async def _ring(
        self, call_id: str, admit: asyncio.Task[str | None], ring_s: float
    ) -> tuple[str, CallOutcome | None] | None:
        """Ring on the unit until the observer decides (``admit``), for at most ``ring_s``;
        ``None`` takes the call, else why not (and in a word, for the caller's console)."""
        try:
            await self.signals.signal(
                SignalPayload(kind="state", call_id=call_id, state="ringing", reason="ringing")
            )
            await asyncio.wait({admit}, timeout=ring_s)
        except asyncio.CancelledError:  # the agent is stopping
            admit.cancel()
            if self._ringing(call_id):
                self.state.idle()
            raise
        finally:
            if self._admit is admit:
                self._admit = None
        if not admit.done():
            admit.cancel()
            await asyncio.wait({admit})
            return f"no answer after {ring_s:g} s", "no_answer"
        if admit.cancelled():
            return "cancelled by the caller before it was answered", "cancelled"
        failed = admit.exception()
        if failed is not None:
            log.error("call %s: ringing failed: %s", call_id, failed)
            return f"the unit could not ring: {failed}", None
        declined = admit.result()
        if declined is None:
            return None
        # The observer's own refusals ("the unit's screen is not ready") are no decline.
        return declined, "declined" if declined.startswith("declined") else None

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
        if self._admit is not None:
            self._admit.cancel()
        if self._ring_task is not None:
            self._ring_task.cancel()
        if self.session is not None:
            await self.session.end("agent stopping")
