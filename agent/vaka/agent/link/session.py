"""One MQTT 5 session at a time to the broker, kept up for as long as the agent runs.

State machine: ``idle -> connecting -> online -> waiting -> connecting ... -> closed``. Each
connection is a new *session* with a new birth sequence (``bdseq``); its retained birth and its
will carry the same number, so central can tell a late will of an old session from the death of
the current one. Inbound messages are checked (topic, size, schema) and routed to one handler per
channel; refusals are logged with a reason, counted and reported as an event; nothing a message
does (or a handler raises) ends the loop.

Every event a unit reports (a call's start and end, a shutter movement, the citizen's button, an
update's step, a message read) is kept in memory (never on storage) until central's receipt on
``receipt`` names it, and one sender sends them in order — again after every reconnect and if no
receipt came within ``receipt_wait_s``: a PUBACK only means the broker has a message, not that
central committed it, and a broker that crashes or restarts may lose what it had acknowledged.
Call, shutter and privacy events are the record of who looked into a home: when too many wait,
other events are given up first.
"""

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import aiomqtt
from pydantic import BaseModel

from vaka.agent import __version__
from vaka.agent.link.settings import Cleared, Handler, LinkSettings, LinkState, StateListener
from vaka.errors import LinkError, ProtocolError
from vaka.protocol.backoff import TCP_NODELAY, backoff_delay
from vaka.protocol.messages import (
    EventMessage,
    EventPayload,
    ReceiptMessage,
    StateMessage,
    StatePayload,
    decode,
    encode,
)
from vaka.protocol.mqttio import guard_socket_writes
from vaka.protocol.refusals import Refusals
from vaka.protocol.topics import UNIT_READS, Channel, device_topic, parse_device_topic
from vaka.provisioning.tls import client_tls_context
from vaka.tasks import cancel_and_wait

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 200
#: Event kinds of the audit trail (calls, shutter movements, privacy mode): the last to be given
#: up when too many events wait for central's receipt.
RECORD_KINDS = frozenset({"call", "shutter", "privacy"})
#: The most unconfirmed events kept (a unit offline for days drops the oldest, and says so).
KEPT_LIMIT = 500


@dataclass
class _Kept:
    """An event waiting for central's receipt."""

    message: EventMessage
    sent_on: int = 0  # the connection it was last sent on (0: not yet)
    sent_at: float = field(default=0.0)  # monotonic


class UnitLink:
    """The unit's side of the broker connection."""

    def __init__(self, settings: LinkSettings) -> None:
        self.settings = settings
        self.refusals = Refusals(log)
        self.bdseq = 0
        self.broker_rtt_ms: float | None = None
        self._state = LinkState.IDLE
        self._listeners: list[StateListener] = []
        self._handlers: dict[Channel, Handler] = {}
        self._cleared: dict[Channel, Cleared] = {}
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._online = asyncio.Event()
        #: Events kept while offline (call ended, shutter closed), sent after reconnecting.
        self._outbox: deque[tuple[Channel, BaseModel]] = deque(maxlen=OUTBOX_LIMIT)
        #: Events by message id, in order, until central's receipt names them.
        self._kept: dict[str, _Kept] = {}
        self._kept_wake = asyncio.Event()
        self._connection = 0

    @property
    def unconfirmed(self) -> int:
        """Events central has not confirmed yet."""
        return len(self._kept)

    # ---------------------------------------------------------------- state

    @property
    def state(self) -> LinkState:
        """The current link state."""
        return self._state

    def subscribe_state(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener`` on every state change; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _set_state(self, new: LinkState) -> None:
        old, self._state = self._state, new
        if old is new:
            return
        log.info("link %s -> %s", old.value, new.value)
        if new is LinkState.ONLINE:
            self._online.set()
        else:
            self._online.clear()
        for listener in list(self._listeners):
            try:
                listener(new)
            except Exception:
                log.exception("link state listener failed")

    async def wait_online(self, timeout: float | None = None) -> None:
        """Wait until the link is online (raises :class:`TimeoutError`)."""
        await asyncio.wait_for(self._online.wait(), timeout)

    # ---------------------------------------------------------------- routing

    def on(self, channel: Channel, handler: Handler, cleared: Cleared | None = None) -> None:
        """Route valid messages arriving on ``channel`` to ``handler``, and ``cleared()`` when
        central clears the channel's retained message (an order withdrawn)."""
        if channel not in UNIT_READS:
            raise ValueError(f"a unit does not receive on {channel.value!r}")
        self._handlers[channel] = handler
        if cleared is not None:
            self._cleared[channel] = cleared

    async def _route(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload
        try:
            parsed = parse_device_topic(topic)
            if parsed.device_id != self.settings.device_id or parsed.channel not in UNIT_READS:
                raise ProtocolError(f"topic {topic!r} is not one this unit reads")
            if not isinstance(payload, bytes | bytearray):
                raise ProtocolError("payload is not bytes")
            if not payload:  # central cleared a retained order
                if (cleared := self._cleared.get(parsed.channel)) is not None:
                    await cleared()
                return
            inbound = decode(payload, parsed.channel)
        except ProtocolError as err:
            await self._refuse(type(err).__name__, str(err), topic)
            return
        except Exception as err:  # the decoder is guarded; this is the last line for a bug
            await self._refuse("unexpected", f"{type(err).__name__}: {err}", topic)
            return
        if isinstance(inbound, ReceiptMessage):
            for event_id in inbound.payload.events:
                self._kept.pop(event_id, None)
            return
        handler = self._handlers.get(parsed.channel)
        if handler is None:
            await self._refuse("unhandled", f"no handler for {parsed.channel.value}", topic)
            return
        try:
            await handler(inbound)
        except Exception as err:
            log.exception("handler for %s failed", parsed.channel.value)
            await self._refuse("handler failed", f"{type(err).__name__}: {err}", topic)

    async def _refuse(self, category: str, reason: str, topic: str) -> None:
        self.refusals.refuse(category, reason, topic)
        detail = {"topic": topic[-100:], "reason": reason[:200]}
        event = EventMessage(payload=EventPayload(kind="refused", detail=detail))
        with contextlib.suppress(LinkError):
            await self.publish(Channel.EVENTS, event)

    # ---------------------------------------------------------------- publishing

    async def publish(
        self, channel: Channel, message: BaseModel, *, retain: bool = False, qos: int = 1
    ) -> None:
        """Publish on one of this unit's channels; raises :class:`LinkError` when offline.

        With QoS 1 the time to the broker's PUBACK is kept as the broker round-trip.
        """
        client = self._client
        if client is None or self._state is not LinkState.ONLINE:
            raise LinkError(f"cannot publish {channel.value}: link is {self._state.value}")
        topic = device_topic(self.settings.device_id, channel)
        started = time.perf_counter()
        try:
            await client.publish(topic, encode(message), qos=qos, retain=retain, timeout=10)
        except aiomqtt.MqttError as err:
            raise LinkError(f"publish to {channel.value} failed: {err}") from err
        if qos:
            self.broker_rtt_ms = (time.perf_counter() - started) * 1000

    async def publish_reliably(self, channel: Channel, message: BaseModel) -> None:
        """Publish now, or keep the message (bounded) and send it after the next connect.

        Events are kept until central's receipt instead (see the module).
        """
        if isinstance(message, EventMessage):
            await self._send_or_keep(message)
            return
        try:
            await self.publish(channel, message)
        except LinkError:
            if len(self._outbox) == self._outbox.maxlen:
                log.warning("outbox full: dropping the oldest kept message")
            self._outbox.append((channel, message))

    async def _send_or_keep(self, message: EventMessage) -> None:
        """Keep ``message`` until its receipt; send it now if nothing older waits to be sent on
        this connection (so a clean stop right after still gets it out), else leave it to the
        sender, which keeps the order."""
        if len(self._kept) >= KEPT_LIMIT:
            dropped = next(
                (i for i, k in self._kept.items() if k.message.payload.kind not in RECORD_KINDS),
                next(iter(self._kept)),
            )
            kind = self._kept.pop(dropped).message.payload.kind
            log.warning(
                "%d events wait for central: dropping the oldest %s event (%s)",
                KEPT_LIMIT,
                kind,
                dropped,
            )
        kept = self._kept[message.id] = _Kept(message)
        connection = self._connection
        if self._state is LinkState.ONLINE and all(
            k.sent_on == connection for k in self._kept.values() if k is not kept
        ):
            try:
                await self.publish(Channel.EVENTS, message)
                kept.sent_on, kept.sent_at = connection, time.monotonic()
                return
            except LinkError:
                pass
        self._kept_wake.set()

    async def _send_kept(self, connection: int) -> None:
        """Send kept events in order: unsent on this connection, or unconfirmed for a while."""
        wait = self.settings.receipt_wait_s
        while True:
            self._kept_wake.clear()
            for event_id, kept in list(self._kept.items()):
                if event_id not in self._kept:
                    continue  # confirmed meanwhile
                if kept.sent_on == connection and time.monotonic() - kept.sent_at < wait:
                    continue
                try:
                    await self.publish(Channel.EVENTS, kept.message)
                except LinkError as err:  # the connection is going: the next one sends it
                    log.info("kept event %s not sent now: %s", event_id, err)
                    break
                kept.sent_on, kept.sent_at = connection, time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kept_wake.wait(), wait / 2)

    async def _flush_outbox(self) -> None:
        while self._outbox:
            channel, message = self._outbox[0]
            await self.publish(channel, message)
            self._outbox.popleft()

    # ---------------------------------------------------------------- session loop

    def _state_message(self, status: str) -> bytes:
        return encode(
            StateMessage(
                payload=StatePayload(
                    status=status,
                    bdseq=self.bdseq,
                    profile=self.settings.profile,
                    agent_version=__version__,
                )
            )
        )

    def _next_bdseq(self) -> int:
        # Milliseconds since the epoch: higher than any earlier session of this unit as long as
        # the clock does not go backwards across reboots (see docs/architecture.md).
        self.bdseq = max(time.time_ns() // 1_000_000, self.bdseq + 1)
        return self.bdseq

    def _tls(self) -> ssl.SSLContext:
        s = self.settings
        return client_tls_context(s.server_ca, s.cert, s.key)

    async def run(self) -> None:
        """Keep a session up until :meth:`close` (or cancellation)."""
        self._task = asyncio.current_task()
        s = self.settings
        state_topic = device_topic(s.device_id, Channel.STATE)
        attempt = 0
        while not self._closing:
            self._set_state(LinkState.CONNECTING)
            self._next_bdseq()
            try:
                will = aiomqtt.Will(state_topic, self._state_message("offline"), qos=1, retain=True)
                async with guard_socket_writes(
                    aiomqtt.Client(
                        s.host,
                        s.port,
                        identifier=s.device_id,
                        protocol=aiomqtt.ProtocolVersion.V5,
                        will=will,
                        tls_context=self._tls(),
                        keepalive=s.keepalive_s,
                        timeout=s.connect_timeout_s,
                        socket_options=TCP_NODELAY,
                    )
                ) as client:
                    if self._closing:  # closed while connecting (see close())
                        break
                    # Subscribed before the birth: central may answer the birth at once (it
                    # sends again the messages the unit missed while offline).
                    for channel in sorted(UNIT_READS):
                        await client.subscribe(device_topic(s.device_id, channel), qos=1)
                    await client.publish(
                        state_topic, self._state_message("online"), qos=1, retain=True
                    )
                    self._client = client
                    # A new number before going online: what was sent on the last connection
                    # counts as unsent here (see _send_or_keep), so resends keep their order.
                    self._connection += 1
                    self._set_state(LinkState.ONLINE)
                    log.info("online as %s (bdseq %d)", s.device_id, self.bdseq)
                    attempt = 0
                    await self._serve(client)
            except aiomqtt.MqttError as err:
                log.warning("broker connection lost or refused: %s", err)
            except Exception as err:  # e.g. unreadable certificate: keep trying, say why
                log.error("cannot connect to the broker: %s", err)
            finally:
                self._client = None
            if self._closing:
                break
            self._set_state(LinkState.WAITING)
            delay = backoff_delay(attempt, s.reconnect_min_s, s.reconnect_max_s)
            attempt += 1
            log.info("reconnecting in %.1f s (attempt %d)", delay, attempt)
            await asyncio.sleep(delay)
        self._set_state(LinkState.CLOSED)

    async def _serve(self, client: aiomqtt.Client) -> None:
        """While online: send what waited, then route inbound messages until the link drops."""
        await self._flush_outbox()
        sender = asyncio.create_task(self._send_kept(self._connection))
        try:
            async for inbound in client.messages:
                try:
                    await self._route(inbound)
                except Exception:  # _route refuses what it can; nothing stops the loop
                    log.exception("routing a message failed")
        finally:
            await cancel_and_wait([sender])

    async def close(self) -> None:
        """Announce "stopped" (retained), disconnect cleanly (no will), end :meth:`run`; twice is
        safe."""
        if self._closing:
            return
        self._closing = True
        client = self._client
        if client is not None and self._state is LinkState.ONLINE:
            try:
                await client.publish(
                    device_topic(self.settings.device_id, Channel.STATE),
                    self._state_message("stopped"),
                    qos=1,
                    retain=True,
                    timeout=3,
                )
            except aiomqtt.MqttError as err:
                log.warning("could not announce a clean stop: %s", err)
        if self._task is not None:
            await cancel_and_wait([self._task])  # a plain cancel may be swallowed: see there
        self._set_state(LinkState.CLOSED)
