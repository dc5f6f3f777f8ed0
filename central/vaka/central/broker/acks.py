"""Acknowledgements after commit, in arrival order, for each of central's broker connections.

A message goes to its handler guarded (:func:`hand_over`): a handler that raises is counted and
its message dropped, so no single message can break a connection's loop or make central
reconnect and receive it again. The handler may return an awaitable that completes once the
message is committed; :class:`PendingAcks` keeps every received message in arrival order and
releases the acknowledgements of the leading ones whose commits are done, so a PUBACK never
overtakes an earlier message's (MQTT 5 asks for them in order) and never comes before its commit.

Both connections use this: the main one (aiomqtt over paho, :mod:`vaka.central.broker.mqtt`) and
the health one (gmqtt, :mod:`vaka.central.broker.health_link`).
"""

import asyncio
import inspect
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from vaka.central.settings.config import MqttSection

log = logging.getLogger(__name__)

#: ``sink(topic, payload)``: ``None`` when done, or an awaitable that completes when the message
#: is committed (its acknowledgement waits for it)
MessageSink = Callable[[str, Any], object]
#: an MQTT 5 PUBACK with reason "success" and no properties: fixed header, remaining length 2
PUBACK_HEADER = bytes([0x40, 2])


class SessionHost(Protocol):
    """What a connection needs from the link that owns it."""

    settings: MqttSection
    #: connections made so far, over all sessions (a poison message must never make this grow)
    connections: int
    #: messages whose handler raised, by channel (each acknowledged and dropped)
    handler_failures: Counter[str]

    def handler_for(self, topic: str) -> tuple[str, MessageSink | None]:
        """The channel name (for counting) and the handler of a message on ``topic``."""
        ...

    def session_changed(self) -> None:
        """A session came up or went down."""
        ...


def puback_packets(mids: list[int]) -> bytes:
    """The PUBACKs of ``mids`` as one buffer: written at once, they leave in one TLS record."""
    return b"".join(PUBACK_HEADER + mid.to_bytes(2, "big") for mid in mids)


def hand_over(host: SessionHost, topic: str, payload: Any) -> "asyncio.Future[Any] | None":
    """Give one message to its handler, guarded; the future of its commit, if it has one."""
    channel, handler = host.handler_for(topic)
    try:
        result = handler(topic, payload) if handler is not None else None
        if inspect.isawaitable(result):
            return asyncio.ensure_future(result)
    except Exception:
        host.handler_failures[channel] += 1
        log.exception("handler for %s failed on %s; dropping the message", channel, topic[:120])
    return None


@dataclass
class _Unacked:
    """A received message whose PUBACK waits for its commit."""

    mid: int
    qos: int
    committed: "asyncio.Future[Any] | None"


class PendingAcks:
    """Received messages in arrival order, each waiting for its commit (or for nothing).

    ``on_commit`` is called whenever a commit some message waits for completes; it then takes
    :meth:`ready` and sends those acknowledgements.
    """

    def __init__(self, on_commit: Callable[[], None]) -> None:
        self._queue: deque[_Unacked] = deque()
        self._on_commit = on_commit
        self._waiting_on: asyncio.Future[Any] | None = None

    def add(self, mid: int, qos: int, committed: "asyncio.Future[Any] | None") -> None:
        """One more received message, behind every earlier one."""
        self._queue.append(_Unacked(mid, qos, committed))
        # A batch's messages share one future: one callback for all of them.
        if committed is not None and committed is not self._waiting_on:
            self._waiting_on = committed
            committed.add_done_callback(lambda _: self._on_commit())

    def ready(self) -> list[tuple[int, int]]:
        """Take the leading messages whose commits are done: their ``(mid, qos)``, QoS > 0 only."""
        ready: list[tuple[int, int]] = []
        queue = self._queue
        while queue:
            head = queue[0]
            if head.committed is not None and not head.committed.done():
                break
            queue.popleft()
            if head.qos > 0:
                ready.append((head.mid, head.qos))
        return ready

    def clear(self) -> None:
        """Forget every message: the connection they came on is gone (the broker sends them
        again on the next one, and their message ids mean nothing there)."""
        self._queue.clear()
        self._waiting_on = None

    def __len__(self) -> int:
        return len(self._queue)
