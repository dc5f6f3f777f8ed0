"""How the call machinery talks back: ``signal/out`` messages to central (and so to the caller)
and ``call`` events for the audit trail."""

import contextlib
from typing import Any

from vaka.agent.call.publisher import Publisher
from vaka.errors import LinkError
from vaka.protocol.messages import EventMessage, EventPayload, SignalMessage, SignalPayload
from vaka.protocol.topics import Channel


class CallSignals:
    """Sends call signalling and call events through a :class:`Publisher`."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def event(self, kind: str, detail: dict[str, Any]) -> None:
        """An event of ``kind``; ``None`` values are left out. Kept while offline."""
        clean = {k: v for k, v in detail.items() if v is not None}
        event = EventMessage(payload=EventPayload(kind=kind, detail=clean))
        await self.publisher.publish_reliably(Channel.EVENTS, event)

    async def signal(self, payload: SignalPayload) -> None:
        """A ``signal/out`` message; dropped while offline (the call is over by then)."""
        with contextlib.suppress(LinkError):
            await self.publisher.publish(Channel.SIGNAL_OUT, SignalMessage(payload=payload))

    async def send(self, payload: SignalPayload) -> None:
        """A ``signal/out`` message that must go out now.

        :raises LinkError: the unit is offline.
        """
        await self.publisher.publish(Channel.SIGNAL_OUT, SignalMessage(payload=payload))

    async def hangup(self, call_id: str, reason: str) -> None:
        """Tell central (and the caller) that call ``call_id`` is over, and why."""
        await self.signal(SignalPayload(kind="hangup", call_id=call_id, reason=reason[:200]))
