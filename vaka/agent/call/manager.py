"""Routes call signalling on the unit: at most one call at a time, every refusal explained.

Refusals go back to central on ``signal/out`` (so the caller sees why) and as an event (so the
audit trail records it). When the broker link is lost, a running call ends: without signalling
nobody could hang it up.
"""

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from vaka.agent.call.guard import OfferGuard, OfferRefused
from vaka.agent.call.session import CallSession
from vaka.agent.hw.hardware import Hardware
from vaka.agent.link import LinkState, UnitLink
from vaka.agent.media.settings import MediaSettings
from vaka.errors import LinkError
from vaka.protocol.messages import (
    AnyMessage,
    EventMessage,
    EventPayload,
    SignalMessage,
    SignalPayload,
)
from vaka.protocol.topics import Channel

log = logging.getLogger(__name__)


class CallManager:
    """The unit's call handling, attached to its link."""

    def __init__(
        self, link: UnitLink, guard: OfferGuard, hardware: Hardware, media: MediaSettings
    ) -> None:
        self.link = link
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
        if p.kind == "offer":
            await self._offer(p)
        elif p.kind == "hangup":
            session = self.session
            if session is not None and session.call_id == p.call_id:
                await session.end(f"hung up by caller ({p.reason or 'no reason given'})")
        else:
            await self._refuse(p.call_id, f"unexpected {p.kind!r} message")

    async def _offer(self, p: SignalPayload) -> None:
        if self.session is not None:
            await self._refuse(p.call_id, "busy: another call is in progress")
            return
        try:
            claims = self.guard.check(p.call_id, p.ticket, p.sdp)
        except OfferRefused as err:
            await self._refuse(p.call_id, str(err))
            return
        session = CallSession(
            claims,
            self.guard.duration_limit(claims),
            self.hardware,
            self.media,
            self._event,
            self._hangup,
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

    async def _forget_when_ended(self, session: CallSession) -> None:
        await session.ended.wait()
        self.last_result = f"{session.claims.purpose}: {session.end_reason}"[:200]
        if self.session is session:
            self.session = None

    def _on_link_state(self, state: LinkState) -> None:
        session = self.session
        if session is not None and state is not LinkState.ONLINE:
            self._background(session.end("broker link lost"))

    async def close(self) -> None:
        """End any call (the agent is stopping)."""
        if self.session is not None:
            await self.session.end("agent stopping")
