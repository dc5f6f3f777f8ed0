"""Central's broker sessions: what it subscribes to, on which connection, and why.

Health, the bulk of the traffic, goes to a shared subscription: several central instances in
the same share group each take a part. State, events and ``signal/out`` are subscribed without
sharing: every instance sees every one. Presence merges idempotently, events are stored once by
their message id (whoever stores one audits it), and each instance keeps only the answers to
the calls it set up. Sessions are persistent (``clean_start`` off, a session expiry), so
messages that arrive while an instance restarts wait at the broker. The health connection's
session lives only briefly after its connection is gone (``[mqtt] health_session_expiry_s``,
30 s): the broker hands a shared subscription's messages to its members in turn, connected or
not, so an instance that died with a long-lived session would keep taking its share of the
fleet's health into a queue nobody reads; once its short session expires the other instances
take all of it. Health is superseded by the next report, so a restart longer than that loses
only reports that are out of date anyway; state, events and signalling stay on the main
session, which keeps its long expiry. Mosquitto 2.0 does not
restore *shared* subscriptions from its persistence file after a broker restart (normal ones it
does), which is why nothing that must not be lost rides on a shared subscription.

With a health certificate (``[mqtt] health_cert``, CN ``<identity>-health``) health comes on a
connection of its own, on gmqtt (:mod:`vaka.central.broker.health_link`, the hot path: it reads
whole buffers where paho reads each packet in pieces). The broker keeps one queue per session and
delivers it in order, so on one connection a call's answer that arrives behind 60 000 queued
health reports waits for all of them; on its own connection it does not wait at all, and a
broker that must drop messages for a lagging central drops superseded health from the health
session's queue, never events, state or signalling (docs/reliability.md). The main connection
(everything but health, or everything when there is no health certificate) is aiomqtt over paho.

Acknowledgements are manual on both connections (:mod:`vaka.central.broker.acks`): a handler may
return an awaitable that completes once the message is committed (ingest does), and the link
sends the PUBACK only then, in the order the messages came; anything else (and anything refused)
is acknowledged at once. A central that dies between receiving and committing gets the message
again from the broker. The MQTT 5 Receive Maximum bounds how many unacknowledged messages the
broker sends, so a backlog stays at the broker. The PUBACKs of one committed batch leave in one
write (one TLS record) instead of one each.

On the main connection messages go from paho's callback straight to the handler (not through
aiomqtt's queue and message objects). Every handler runs guarded: one that raises is counted and
its message acknowledged (dropped), so no single message can break the loop or make central
reconnect and receive it again.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel

from vaka.central.broker.acks import (
    MessageSink,
    PendingAcks,
    SessionHost,
    hand_over,
    puback_packets,
)
from vaka.central.broker.calls_first import CallsFirst
from vaka.central.broker.health_link import HealthSession
from vaka.central.settings.config import MqttSection
from vaka.errors import LinkError
from vaka.protocol.backoff import TCP_NODELAY, backoff_delay
from vaka.protocol.enrolment import ENROL_ROOT
from vaka.protocol.messages import encode
from vaka.protocol.mqttio import guard_socket_writes
from vaka.protocol.topics import Channel, device_filter, device_topic, shared
from vaka.provisioning.tls import client_tls_context

log = logging.getLogger(__name__)

#: ``await publish(device_id, channel, message)``: a message to one unit (see
#: :meth:`CentralLink.publish_to_unit`)
PublishToUnit = Callable[[str, Channel, BaseModel], Awaitable[None]]
#: ``await publish(topic, payload, retain)``: already-encoded bytes (see
#: :meth:`CentralLink.publish_raw`)
PublishRaw = Callable[[str, bytes, bool], Awaitable[None]]
#: how long central waits for the broker to confirm its subscriptions
SUBSCRIBE_TIMEOUT_S = 120.0


def enrol_topic_filter() -> str:
    """Every unit's enrolment request."""
    return f"{ENROL_ROOT}/+/csr"


def health_identity(identity: str) -> str:
    """The certificate CN of an instance's health connection."""
    return f"{identity}-health"


def send_pubacks(client: paho.Client, acks: list[tuple[int, int]]) -> None:
    """Acknowledge ``(mid, qos)`` pairs in order; the QoS 1 ones in one write.

    paho writes every queued packet with its own ``send`` (a TLS record and a system call each);
    one committed batch is hundreds of PUBACKs, so they are queued as one packet of many.
    """
    run: list[int] = []
    for mid, qos in acks:
        if qos == 1:
            run.append(mid)
            continue
        _flush_pubacks(client, run)
        run = []
        if qos > 1:
            client.ack(mid, qos)
    _flush_pubacks(client, run)


def _flush_pubacks(client: paho.Client, mids: list[int]) -> None:
    if not mids:
        return
    if len(mids) == 1:
        client.ack(mids[0], 1)
        return
    client._packet_queue(paho.PUBACK, puback_packets(mids), 0, 0)


class _Session:
    """One MQTT connection of central (aiomqtt over paho): who it is, what it subscribes to,
    what it still owes."""

    def __init__(
        self,
        link: SessionHost,
        identity: str,
        cert: Path,
        key: Path,
        filters: list[str],
        session_expiry_s: int,
    ) -> None:
        self.link = link
        self.identity = identity
        self.cert = cert
        self.key = key
        self.filters = filters
        self.session_expiry_s = session_expiry_s
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.pending = PendingAcks(self._ack_ready)

    def _new_client(self) -> aiomqtt.Client:
        s = self.link.settings
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = s.receive_maximum
        client = aiomqtt.Client(
            s.host,
            s.port,
            identifier=self.identity,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=client_tls_context(s.server_ca, self.cert, self.key),
            keepalive=s.keepalive_s,
            # No session to resume when none is kept (the broker would start a new one anyway).
            clean_start=self.session_expiry_s == 0,
            properties=props,
            timeout=10,
            socket_options=TCP_NODELAY,
        )
        # aiomqtt 2.5 has no manual-ack option; its paho client (2.x) has: with it on, paho
        # sends a QoS 1 PUBACK only when asked (see _ack_ready).
        client._client.manual_ack_set(True)
        # Straight from paho's callback to the handler: no aiomqtt message object, no queue.
        client._client.on_message = self._on_message
        return guard_socket_writes(client)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        # Anything escaping a paho callback would end the connection: nothing may.
        try:
            self.dispatch(message.topic, message.payload, message.mid, message.qos)
        except Exception:
            self.link.handler_failures["link"] += 1
            log.exception("central could not take a message; it is acknowledged and dropped")
            self.pending.add(message.mid, message.qos, None)
            self._ack_ready()

    def dispatch(self, topic: str, payload: bytes | bytearray, mid: int, qos: int) -> None:
        """Hand one message to its handler, guarded; queue its acknowledgement."""
        self.pending.add(mid, qos, hand_over(self.link, topic, payload))
        self._ack_ready()

    def _ack_ready(self) -> None:
        """Acknowledge, in arrival order, every message whose commit is done."""
        client = self.client
        if client is None:  # connected, but the client not handed over yet: acknowledge later
            return
        ready = self.pending.ready()
        if ready:
            send_pubacks(client._client, ready)

    @property
    def unacked(self) -> int:
        """Messages received and not yet acknowledged."""
        return len(self.pending)

    async def run(self) -> None:
        """Connect, subscribe and take messages until cancelled; reconnect with backoff."""
        attempt = 0
        while True:
            try:
                async with self._new_client() as client:
                    try:
                        self.link.connections += 1
                        # A resumed session's messages come from the CONNACK on, before the SUBACK:
                        # their acknowledgements need the client already.
                        self.client = client
                        self._ack_ready()
                        # One SUBSCRIBE for all filters, and time for its SUBACK: on a session
                        # resumed with a large backlog the broker sends queued messages first and
                        # may be busy saving its store (a short timeout here reconnected central
                        # again and again, never draining).
                        await client.subscribe(
                            [(f, 1) for f in self.filters], timeout=SUBSCRIBE_TIMEOUT_S
                        )
                        self.connected.set()
                        self.link.session_changed()
                        attempt = 0
                        log.info("%s subscribed to %s", self.identity, ", ".join(self.filters))
                        # Messages go to _on_message; this only waits for the connection to end.
                        async for _ in client.messages:
                            pass
                    finally:
                        # Nothing more is written on a connection that is closing: an
                        # acknowledgement queued now would reach a closed socket.
                        self.client = None
            except aiomqtt.MqttError as err:
                log.warning("%s: broker connection lost or refused: %s", self.identity, err)
            except Exception as err:
                log.error("%s cannot connect to the broker: %s", self.identity, err)
            finally:
                self.client = None
                # Unacknowledged messages of the lost connection come again (persistent session);
                # their message ids mean nothing on the next connection.
                self.pending.clear()
                self.connected.clear()
                self.link.session_changed()
            delay = backoff_delay(attempt, 0.5, 30.0)
            attempt += 1
            await asyncio.sleep(delay)


class CentralLink:
    """Keeps the MQTT sessions up; unit reports go to ``sink``, call answers to ``signals``."""

    def __init__(
        self,
        settings: MqttSection,
        sink: MessageSink,
        signals: MessageSink | None = None,
        enrolments: MessageSink | None = None,
        renewals: MessageSink | None = None,
        calls_first: CallsFirst | None = None,
    ) -> None:
        self.settings = settings
        #: health gives way to calls being set up (see :mod:`vaka.central.broker.calls_first`)
        self.calls_first = calls_first or CallsFirst(0)
        self.sink = sink
        self.signals = signals
        self.enrolments = enrolments
        self.renewals = renewals
        #: set while every session is up
        self.connected = asyncio.Event()
        #: connections made so far (a poison message must never make this grow)
        self.connections = 0
        #: messages whose handler raised, by channel (each acknowledged and dropped)
        self.handler_failures: Counter[str] = Counter()
        self.main = _Session(
            self, settings.identity, settings.cert, settings.key, [], settings.session_expiry_s
        )
        self.sessions: list[_Session | HealthSession] = [self.main]
        health = shared(settings.share_group, device_filter(Channel.HEALTH))
        if settings.health_cert is not None and settings.health_key is not None:
            self.sessions.append(
                HealthSession(
                    self,
                    health_identity(settings.identity),
                    settings.health_cert,
                    settings.health_key,
                    [health],
                    settings.health_session_expiry_s,
                    self.calls_first,
                )
            )
        own = len(self.sessions) > 1
        self.main.filters = [f for f in self.subscriptions() if not (own and f == health)]

    def subscriptions(self) -> list[str]:
        """The topic filters central subscribes to (over all its sessions)."""
        share = self.settings.share_group
        return [
            shared(share, device_filter(Channel.HEALTH)),
            device_filter(Channel.STATE),
            device_filter(Channel.EVENTS),
            device_filter(Channel.SIGNAL_OUT),
            *([enrol_topic_filter()] if self.enrolments is not None else []),
            *([shared(share, device_filter(Channel.RENEW))] if self.renewals is not None else []),
        ]

    def handler_for(self, topic: str) -> tuple[str, MessageSink | None]:
        """The channel name (for counting) and the handler of a message on ``topic``."""
        if topic.startswith(ENROL_ROOT + "/"):
            return "enrol", self.enrolments
        if topic.endswith("/renew"):
            return "renew", self.renewals
        if topic.endswith("/signal/out"):
            return "signal/out", self.signals
        return topic.rsplit("/", 1)[-1][:20], self.sink

    def session_changed(self) -> None:
        """Keep :attr:`connected` true exactly while every session is up."""
        if all(s.connected.is_set() for s in self.sessions):
            self.connected.set()
        else:
            self.connected.clear()

    def stats(self) -> dict[str, Any]:
        """Connections made, handler failures and acknowledgements still waiting."""
        return {
            "connections": self.connections,
            "handler_failures": dict(self.handler_failures),
            "unacked": sum(s.unacked for s in self.sessions),
            # times the health connection stopped reading to keep its window (health_link.py)
            "reads_held": sum(s.holds for s in self.sessions if isinstance(s, HealthSession)),
            "sessions": [s.identity for s in self.sessions],
            # how health gave way to calls being set up (calls_first.py)
            "calls_first": self.calls_first.stats(),
        }

    async def run(self) -> None:
        """Run every session until cancelled."""
        async with asyncio.TaskGroup() as group:
            for session in self.sessions:
                group.create_task(session.run(), name=session.identity)

    async def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish already-encoded bytes (the enrolment answers)."""
        client = self.main.client
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
        client = self.main.client
        if client is None:
            raise LinkError("central is not connected to the broker")
        try:
            await client.publish(
                device_topic(device_id, channel), encode(message), qos=1, retain=retain, timeout=10
            )
        except aiomqtt.MqttError as err:
            raise LinkError(f"publish to {device_id} failed: {err}") from err
