"""Every shutter movement that ends somewhere (open, closed, fault) goes to central as a
``shutter`` event, with the call it belongs to: each open and close is an audit event."""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from vaka.agent.call.state import UnitCall
from vaka.agent.hw.shutter import Shutter, ShutterState
from vaka.protocol.messages import EventMessage, EventPayload

log = logging.getLogger(__name__)

PublishEvent = Callable[[EventMessage], Coroutine[Any, Any, None]]

#: The states that end a movement.
REPORTED = (ShutterState.OPEN, ShutterState.CLOSED, ShutterState.FAULT)


class ShutterReporter:
    """Watches a shutter while the agent runs (a unit without one reports nothing)."""

    def __init__(self, shutter: Shutter | None, call: UnitCall, publish: PublishEvent) -> None:
        self.shutter = shutter
        self.call = call
        self.publish = publish
        self._unsubscribe: Callable[[], None] = lambda: None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start watching; the shutter's listeners run on its own thread."""
        if self.shutter is None:
            return
        loop = asyncio.get_running_loop()

        def changed(state: ShutterState) -> None:
            if state in REPORTED:
                loop.call_soon_threadsafe(self._spawn, self._event(state))

        self._unsubscribe = self.shutter.subscribe(changed)

    def _event(self, state: ShutterState) -> Coroutine[Any, Any, None]:
        session = self.call.session
        detail: dict[str, str | None] = {
            "state": state.value,
            "call_id": session.call_id if session else None,
            "caller": session.claims.sub if session else None,
            "purpose": session.claims.purpose if session else None,
        }
        clean = {k: v for k, v in detail.items() if v is not None}
        return self.publish(EventMessage(payload=EventPayload(kind="shutter", detail=clean)))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop watching, after the events already queued were handed to the link."""
        await asyncio.sleep(0)
        self._unsubscribe()
