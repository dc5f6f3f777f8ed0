"""The TV unit's inbox of messages and reminders: verify, show one at a time, report.

A signed message arrives on the ``message`` channel. The inbox verifies it with central's pinned
config key (a refusal is logged, counted and reported, and nothing is shown), ignores a message
it has already taken, and shows it — or queues it (first in, first out, at most
:data:`QUEUE_LIMIT`) while another is on the screen. Each message shown starts a timer: if the
citizen does not press *Acknowledge* within ``ack_within_s`` (or by the message's expiry), it is
hidden and reported missed, and the next one is shown.

Every outcome goes to central as an ``events`` message of kind ``message``:
``{"action": "shown" | "acknowledged" | "missed" | "refused", "mid": ..., "reason"?: ...}``.

Everything stays in memory: nothing about a message is ever written to disk, and it is dropped
once it leaves the screen.
"""

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from joserfc.jwk import OKPKey
from pydantic import BaseModel

from vaka.protocol.messages import (
    AnyMessage,
    EventMessage,
    EventPayload,
    EventValue,
    MessageMessage,
)
from vaka.protocol.refusals import Refusals
from vaka.protocol.topics import Channel
from vaka.provisioning.messages import BadMessageToken, SignedMessage, verify_message

log = logging.getLogger(__name__)

#: Messages waiting behind the one on screen.
QUEUE_LIMIT = 20
#: Message ids remembered so that a repeated delivery is not shown twice.
SEEN_LIMIT = 500

Report = Callable[[str, dict[str, EventValue]], Awaitable[None]]
Show = Callable[[SignedMessage], None]
Hide = Callable[[str], None]


def event_reporter(publish: Callable[[Channel, BaseModel], Awaitable[None]]) -> Report:
    """A ``report`` that sends each outcome as a ``message`` event with ``publish`` (the link's
    ``publish_reliably``, which keeps it while offline)."""

    async def report(action: str, detail: dict[str, EventValue]) -> None:
        event = EventPayload(kind="message", detail={"action": action, **detail})
        await publish(Channel.EVENTS, EventMessage(payload=event))

    return report


def log_show(message: SignedMessage) -> None:
    """The default ``show``: only log (a TV with a screen shows it on its message board)."""
    log.info("message %s (%s) from %s to show", message.mid, message.kind, message.sender_name)


def log_hide(mid: str) -> None:
    """The default ``hide``: only log."""
    log.info("message %s to hide", mid)


class MessageInbox:
    """Messages and reminders for one TV unit, one on screen at a time.

    ``show`` and ``hide`` (the TV's :class:`~vaka.agent.tv.shown_message.MessageBoard`, or only
    logging) are called on the event loop and must not block. Public methods run on the event loop;
    from another thread use ``loop.call_soon_threadsafe(inbox.acknowledge, mid)``.
    """

    def __init__(
        self,
        device_id: str,
        config_key: OKPKey | None,
        report: Report,
        show: Show = log_show,
        hide: Hide = log_hide,
        clock: Callable[[], float] = time.time,
        *,
        refusals: Refusals | None = None,
    ) -> None:
        self.device_id = device_id
        self.config_key = config_key
        self.report = report
        self.show = show
        self.hide = hide
        self.clock = clock
        self.refusals = refusals or Refusals(log)
        self._current: SignedMessage | None = None
        self._waiting: deque[SignedMessage] = deque()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._timer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def current(self) -> SignedMessage | None:
        """The message on screen now, or ``None``."""
        return self._current

    @property
    def waiting(self) -> list[SignedMessage]:
        """The messages queued behind the current one, oldest first."""
        return list(self._waiting)

    # ---------------------------------------------------------------- arrivals

    async def handle(self, message: AnyMessage) -> None:
        """A message from the ``message`` channel (register with ``link.on``)."""
        if self._closed:
            return
        assert isinstance(message, MessageMessage)
        try:
            signed = await asyncio.to_thread(self._verify, message.payload.token)
        except BadMessageToken as err:
            await self._refuse(str(err), err.mid)
            return
        if signed.mid in self._seen:
            log.debug("message %s already taken: ignored", signed.mid)
            return
        if self._current is not None and len(self._waiting) >= QUEUE_LIMIT:
            await self._refuse(
                f"{QUEUE_LIMIT} messages are already waiting to be shown", signed.mid
            )
            return
        self._remember(signed.mid)
        if self._current is None:
            await self._show(signed)
        else:
            log.info("message %s queued behind %s", signed.mid, self._current.mid)
            self._waiting.append(signed)

    def _verify(self, token: str) -> SignedMessage:
        if self.config_key is None:
            raise BadMessageToken("no pinned config key ([trust] config_key): cannot verify")
        return verify_message(token, self.config_key, self.device_id, self.clock())

    async def _refuse(self, reason: str, mid: str | None) -> None:
        self.refusals.refuse("message", reason, "message")
        detail: dict[str, EventValue] = {"reason": reason[:200]}
        if mid is not None:
            detail["mid"] = mid
        await self._report("refused", detail)

    def _remember(self, mid: str) -> None:
        self._seen[mid] = None
        while len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)

    # ---------------------------------------------------------------- the screen

    async def _show(self, message: SignedMessage) -> None:
        self._current = message
        try:
            self.show(message)
        except Exception:
            log.exception("showing message %s failed", message.mid)
        log.info("message %s (%s) shown", message.mid, message.kind)
        await self._report("shown", {"mid": message.mid, "kind": message.kind})
        deadline = min(self.clock() + message.ack_within_s, float(message.exp))
        self._timer = asyncio.get_running_loop().create_task(
            self._expire(message.mid, deadline), name=f"message-{message.mid}"
        )

    async def _expire(self, mid: str, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - self.clock()))
        self._timer = None  # this task: not to be cancelled by what follows
        ended = self._take_off(mid)
        if ended is not None:
            await self._after(ended, "missed", {"reason": "not acknowledged in time"})

    def acknowledge(self, mid: str) -> bool:
        """The citizen pressed *Acknowledge* on message ``mid``; ``False`` if it is not on
        screen (already gone, or another one). It is hidden at once; the report and the next
        message follow in a task."""
        ended = None if self._closed else self._take_off(mid)
        if ended is None:
            log.info("acknowledge of %s ignored: it is not on screen", mid)
            return False
        self._spawn(self._after(ended, "acknowledged", {}))
        return True

    def _take_off(self, mid: str) -> SignedMessage | None:
        """Hide message ``mid`` if it is the one on screen and return it, else ``None``."""
        current = self._current
        if current is None or current.mid != mid:
            return None
        self._current = None
        self._cancel_timer()
        self._hide(mid)
        return current

    async def _after(self, ended: SignedMessage, action: str, extra: dict[str, EventValue]) -> None:
        """Report how ``ended`` left the screen, then show the next one."""
        log.info("message %s %s", ended.mid, action)
        await self._report(action, {"mid": ended.mid, "kind": ended.kind, **extra})
        await self._next()

    async def _next(self) -> None:
        while self._current is None and self._waiting and not self._closed:
            message = self._waiting.popleft()
            if self.clock() > message.exp:
                log.info("message %s expired while waiting", message.mid)
                await self._report(
                    "missed",
                    {"mid": message.mid, "kind": message.kind, "reason": "expired while waiting"},
                )
                continue
            await self._show(message)

    def _hide(self, mid: str) -> None:
        try:
            self.hide(mid)
        except Exception:
            log.exception("hiding message %s failed", mid)

    # ---------------------------------------------------------------- plumbing

    async def _report(self, action: str, detail: dict[str, EventValue]) -> None:
        try:
            await self.report(action, detail)
        except Exception:
            log.exception("reporting message %s %s failed", detail.get("mid"), action)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    def close(self) -> None:
        """Cancel timers, take the message off the screen and forget every message (nothing
        more is reported). Safe twice."""
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        for task in list(self._tasks):
            task.cancel()
        if self._current is not None:
            self._hide(self._current.mid)
        self._current = None
        self._waiting.clear()
