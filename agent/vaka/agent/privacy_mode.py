"""The citizen's privacy mode: "I have visitors" or "I am away" blocks the camera for a while.

The citizen starts it on the TV (or with the nightcam's button); for ``[privacy]
duration_min`` (60 by default) the unit refuses night checks and video visits itself, with the
reason ("the citizen has visitors until 23:40") — central refuses them too, but the unit does not
depend on it. A citizen's own call to the night staff and an emergency (break-glass) call, which
carries its own typed reason and is audited, still go through.

Each start and end is a ``privacy`` event (sent reliably: kept until central confirms it), so
central's audit trail has both; the mode also rides in every health sample. It ends by itself
when its time is up (measured on the monotonic clock, so a clock stepped by NTP does not stretch
or cut it), or when the citizen ends it. Nothing is written to disk: after a restart the camera
is simply no longer blocked, and the unit says so with an end event.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from vaka.errors import LinkError
from vaka.protocol.messages import EventMessage, EventPayload, PrivacyState

log = logging.getLogger(__name__)

Mode = Literal["visitors", "away"]
#: What a privacy mode blocks: the calls in which staff look in without the citizen's answer
#: (night checks) or that the citizen would have to take (video visits).
BLOCKED_PURPOSES = frozenset({"night_check", "video_visit"})
#: How each mode is said in a refusal.
WORDS = {"visitors": "has visitors", "away": "is away"}

PublishEvent = Callable[[EventMessage], Awaitable[None]]
Listener = Callable[[PrivacyState | None], None]


def refusal_words(state: PrivacyState) -> str:
    """ "the citizen has visitors until 23:40" (the unit's local time)."""
    until = time.strftime("%H:%M", time.localtime(state.until))
    return f"the citizen {WORDS[state.mode]} until {until}"


class PrivacyMode:
    """The unit's privacy mode: started, ended by the citizen or by its time, and reported."""

    def __init__(self, publish: PublishEvent, duration_min: float = 60.0) -> None:
        self.publish = publish
        self.duration_min = duration_min
        self.state: PrivacyState | None = None
        self._timer: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(state)`` on every change; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def refusal(self, purpose: str) -> str | None:
        """Why a ``purpose`` call is refused now ("privacy mode: the citizen has visitors until
        23:40"), or ``None``."""
        state = self.state
        if state is None or purpose not in BLOCKED_PURPOSES:
            return None
        return f"privacy mode: {refusal_words(state)}"

    async def start(self, mode: Mode, minutes: float | None = None) -> PrivacyState:
        """Block the camera for ``minutes`` (``[privacy] duration_min`` if not given)."""
        length_s = 60.0 * (self.duration_min if minutes is None else minutes)
        now = time.time()
        state = PrivacyState(mode=mode, since=now, until=now + length_s)
        self._cancel_timer()
        self.state = state
        log.info("privacy mode %s: %s", mode, refusal_words(state))
        self._changed()
        loop = asyncio.get_running_loop()
        self._timer = loop.create_task(self._end_later(length_s), name="privacy-mode-end")
        await self._report("started", state)
        return state

    async def end(self, reason: str) -> None:
        """End the mode now (``reason``: "ended by the citizen", "time is up"); nothing if off."""
        state = self.state
        if state is None:
            return
        self.state = None
        if self._timer is not asyncio.current_task():
            self._cancel_timer()
        self._timer = None
        log.info("privacy mode %s ended: %s", state.mode, reason)
        self._changed()
        await self._report("ended", state, reason)

    async def toggle(self, mode: Mode = "visitors") -> None:
        """The nightcam's button: start ``mode``, or end the mode that runs."""
        if self.state is None:
            await self.start(mode)
        else:
            await self.end("ended by the citizen")

    def close(self) -> None:
        """Stop the timer (the agent is stopping); the mode ends with the process."""
        self._cancel_timer()

    async def _end_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self.end("time is up")

    def _cancel_timer(self) -> None:
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()

    def _changed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener(self.state)
            except Exception:
                log.exception("privacy mode listener failed")

    async def _report(self, action: str, state: PrivacyState, reason: str | None = None) -> None:
        detail: dict[str, str | float | None] = {
            "action": action,
            "mode": state.mode,
            "since": round(state.since, 3),
            "until": round(state.until, 3),
        }
        if reason is not None:
            detail["reason"] = reason
        message = EventMessage(payload=EventPayload(kind="privacy", detail=detail))
        try:
            await self.publish(message)
        except LinkError as err:
            log.warning("privacy mode %s could not be reported yet: %s", action, err)
