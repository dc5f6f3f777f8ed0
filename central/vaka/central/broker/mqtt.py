"""Central's broker session: what it subscribes to, shared or not, and why.

Health, the bulk of the traffic, goes to a shared subscription: several central instances in
the same share group each take a part. State, events and ``signal/out`` are subscribed without
sharing: every instance sees every one. Presence merges idempotently, events are stored once by
their message id (whoever stores one audits it), and each instance keeps only the answers to
the calls it set up. The session is persistent (``clean_start`` off, a session expiry), so
messages that arrive while an instance restarts wait at the broker. Mosquitto 2.0 does not
restore *shared* subscriptions from its persistence file after a broker restart (normal ones it
does), which is why nothing that must not be lost rides on a shared subscription.

Acknowledgements are manual: a handler may return an awaitable that completes once the message
is committed (ingest does), and the link sends the PUBACK only then, in the order the messages
came; anything else (and anything refused) is acknowledged at once. A central that dies between
receiving and committing gets the message again from the broker. The MQTT 5 Receive Maximum
bounds how many unacknowledged messages the broker sends, so a backlog stays at the broker.

Every handler runs guarded: one that raises is counted and its message acknowledged (dropped),
so no single message can break the loop or make central reconnect and receive it again.
"""

import asyncio
import inspect
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel

from vaka.central.settings.config import MqttSection
from vaka.errors import LinkError
from vaka.protocol.backoff import TCP_NODELAY, backoff_delay
from vaka.protocol.enrolment import ENROL_ROOT
from vaka.protocol.messages import encode
from vaka.protocol.topics import Channel, device_filter, device_topic, shared
from vaka.provisioning.tls import client_tls_context

log = logging.getLogger(__name__)

#: ``sink(topic, payload)``: ``None`` when done, or an awaitable that completes when the message
#: is committed (its acknowledgement waits for it)
MessageSink = Callable[[str, Any], object]
#: ``await publish(device_id, channel, message)``: a message to one unit (see
#: :meth:`CentralLink.publish_to_unit`)
PublishToUnit = Callable[[str, Channel, BaseModel], Awaitable[None]]
#: ``await publish(topic, payload, retain)``: already-encoded bytes (see
#: :meth:`CentralLink.publish_raw`)
PublishRaw = Callable[[str, bytes, bool], Awaitable[None]]


def enrol_topic_filter() -> str:
    """Every unit's enrolment request."""
    return f"{ENROL_ROOT}/+/csr"


@dataclass
class _Unacked:
    """A received message whose PUBACK waits for its commit."""

    mid: int
    qos: int
    committed: "asyncio.Future[Any] | None"


class CentralLink:
    """Keeps central's MQTT session up; unit reports go to ``sink``, call signals to ``signals``."""

    def __init__(
        self,
        settings: MqttSection,
        sink: MessageSink,
        signals: MessageSink | None = None,
        enrolments: MessageSink | None = None,
        renewals: MessageSink | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.signals = signals
        self.enrolments = enrolments
        self.renewals = renewals
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        #: connections made so far (a poison message must never make this grow)
        self.connections = 0
        #: messages whose handler raised, by channel (each acknowledged and dropped)
        self.handler_failures: Counter[str] = Counter()
        self._unacked: deque[_Unacked] = deque()

    def subscriptions(self) -> list[str]:
        """The topic filters central subscribes to."""
        share = self.settings.share_group
        return [
            shared(share, device_filter(Channel.HEALTH)),
            device_filter(Channel.STATE),
            device_filter(Channel.EVENTS),
            device_filter(Channel.SIGNAL_OUT),
            *([enrol_topic_filter()] if self.enrolments is not None else []),
            *([shared(share, device_filter(Channel.RENEW))] if self.renewals is not None else []),
        ]

    def _properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        props.ReceiveMaximum = self.settings.receive_maximum
        return props

    def _new_client(self) -> aiomqtt.Client:
        s = self.settings
        client = aiomqtt.Client(
            s.host,
            s.port,
            identifier=s.identity,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=client_tls_context(s.server_ca, s.cert, s.key),
            keepalive=s.keepalive_s,
            clean_start=False,
            properties=self._properties(),
            timeout=10,
            socket_options=TCP_NODELAY,
        )
        # aiomqtt 2.5 has no manual-ack option; its paho client (2.x) has: with it on, paho
        # sends a QoS 1 PUBACK only when ack() is called (see _ack_ready).
        client._client.manual_ack_set(True)
        return client

    def _handler(self, topic: str) -> tuple[str, MessageSink | None]:
        if topic.startswith(ENROL_ROOT + "/"):
            return "enrol", self.enrolments
        if topic.endswith("/renew"):
            return "renew", self.renewals
        if topic.endswith("/signal/out"):
            return "signal/out", self.signals
        return topic.rsplit("/", 1)[-1][:20], self.sink

    def _dispatch(self, message: aiomqtt.Message) -> None:
        """Hand one message to its handler, guarded; queue its acknowledgement."""
        topic = message.topic.value
        channel, handler = self._handler(topic)
        committed: asyncio.Future[Any] | None = None
        try:
            result = handler(topic, message.payload) if handler is not None else None
            if inspect.isawaitable(result):
                committed = asyncio.ensure_future(result)
        except Exception:
            self.handler_failures[channel] += 1
            log.exception("handler for %s failed on %s; dropping the message", channel, topic[:120])
        self._unacked.append(_Unacked(message.mid, message.qos, committed))
        if committed is not None:
            committed.add_done_callback(lambda _: self._ack_ready())
        self._ack_ready()

    def _ack_ready(self) -> None:
        """Acknowledge, in arrival order, every message whose commit is done."""
        client = self._client
        while self._unacked:
            head = self._unacked[0]
            if head.committed is not None and not head.committed.done():
                return
            self._unacked.popleft()
            if client is not None and head.qos > 0:
                client._client.ack(head.mid, head.qos)

    def stats(self) -> dict[str, Any]:
        """Connections made, handler failures and acknowledgements still waiting."""
        return {
            "connections": self.connections,
            "handler_failures": dict(self.handler_failures),
            "unacked": len(self._unacked),
        }

    async def run(self) -> None:
        """Connect, subscribe and deliver messages until cancelled; reconnect with backoff."""
        s = self.settings
        attempt = 0
        while True:
            try:
                async with self._new_client() as client:
                    self.connections += 1
                    for topic_filter in self.subscriptions():
                        await client.subscribe(topic_filter, qos=1)
                    self._client = client
                    self.connected.set()
                    attempt = 0
                    log.info("central %s subscribed (share group %s)", s.identity, s.share_group)
                    async for message in client.messages:
                        self._dispatch(message)
            except aiomqtt.MqttError as err:
                log.warning("central's broker connection lost or refused: %s", err)
            except Exception as err:
                log.error("central cannot connect to the broker: %s", err)
            finally:
                self._client = None
                # Unacknowledged messages of the lost connection come again (persistent session);
                # their message ids mean nothing on the next connection.
                self._unacked.clear()
                self.connected.clear()
            delay = backoff_delay(attempt, 0.5, 30.0)
            attempt += 1
            await asyncio.sleep(delay)

    async def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish already-encoded bytes (the enrolment answers)."""
        client = self._client
        if client is None:
            raise LinkError("central is not connected to the broker")
        try:
            await client.publish(topic, payload, qos=1, retain=retain, timeout=10)
        except aiomqtt.MqttError as err:
            raise LinkError(f"publish to {topic} failed: {err}") from err

    async def publish_to_unit(
        self, device_id: str, channel: Channel, message: BaseModel, *, retain: bool = False
    ) -> None:
        """Publish to a unit's inbound channel (``signal/in`` or ``config``)."""
        client = self._client
        if client is None:
            raise LinkError("central is not connected to the broker")
        try:
            await client.publish(
                device_topic(device_id, channel), encode(message), qos=1, retain=retain, timeout=10
            )
        except aiomqtt.MqttError as err:
            raise LinkError(f"publish to {device_id} failed: {err}") from err
