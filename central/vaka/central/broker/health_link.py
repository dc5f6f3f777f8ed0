"""Central's health connection, on gmqtt: the fleet's health reports, read in whole buffers.

Health is nearly all of central's MQTT traffic, so its connection is the hot path. paho reads
each packet in three to five TLS reads and makes a ``Properties`` object per PUBLISH; gmqtt
(an asyncio protocol) parses every packet in what one read brought. Measured side by side
(bench/mqtt_clients.py, docs/benchmarks.md) gmqtt 0.7.0 took ~12 µs of CPU per QoS 1 message,
paho ~49 µs, aiomqtt ~128 µs. Signalling, state and events stay on the main connection
(aiomqtt, :mod:`vaka.central.broker.mqtt`).

The connection keeps every guarantee of the main one: TLS with the health certificate
(``[mqtt] health_cert``, CN ``<identity>-health``), MQTT 5, a persistent session with
``[mqtt] health_session_expiry_s``, a Receive Maximum (``[mqtt] receive_maximum``) that keeps a
backlog at the broker, reconnects with backoff, and each message acknowledged only after its
batch is committed, in arrival order (:class:`~vaka.central.broker.acks.PendingAcks`), a
committed batch's PUBACKs in one write. A poison message is refused (or its handler's failure
counted) and acknowledged; nothing it does ends the connection.

Two parts of gmqtt are taken over, both for a guarantee:

* **Acknowledgements.** gmqtt's own "acknowledge after the work" (``optimistic_acknowledgement``
  off) runs a task per message and sends each PUBACK when that message's task ends: one TLS
  write per message, out of order when a refused message overtakes a waiting one, and — since
  gmqtt reconnects on the same client — a PUBACK of a message from a lost connection would go
  out on the next connection, where its message id may name another message. Central takes QoS 1
  PUBLISHes at gmqtt's per-QoS hook instead (:class:`_HealthClient`) and acknowledges them
  itself, in order and in one write per commit.
* **Reconnects.** gmqtt reconnects by itself after a fixed delay. Here every connection is a new
  client, made by :meth:`HealthSession.run` after an exponential backoff with jitter, so nothing
  of a lost connection (its message ids, its acknowledgements) reaches the next one.

gmqtt parses everything one socket read brought at once (hundreds of reports while a backlog
drains); the reports go on to ingest a slice per turn of the event loop
(:meth:`HealthSession.take`), so the main connection's signalling is not held up behind a whole
buffer of them.

**The window is held by central too.** Mosquitto 2.0.11 (Debian 12's) does not keep to the
Receive Maximum once its subscriber lags: each PUBACK for the oldest message in flight lets it
send up to a whole window more (``db__message_delete_outgoing`` counts the window from the acked
message's place in the list; fixed in Mosquitto 2.0.13). Measured, central held 75 000
unacknowledged reports after a restart into a backlog, with the memory that costs. So central stops
parsing while a window's worth of reports is unacknowledged (:meth:`HealthSession.take`) and
reads on once half of it is committed. Its connection's protocol (:class:`_GatedProtocol`) waits
before each read; what the broker sends meanwhile fills the stream's buffer, which then stops
reading the socket (asyncio's own flow control), and TCP's window holds the rest at the broker.
Pausing the transport instead does not hold: the stream reader resumes it whenever its buffer
drains.

**Reads are gathered.** At a city's steady rate reports arrive one or two per socket read, and
each read costs a wake-up of the loop, a TLS record decrypted, a parse and a hand-over. After a
read smaller than :data:`COALESCE_BELOW` the socket rests for :data:`COALESCE_S` (10 ms, against a
250 ms aim for publish to commit), so the next read brings what arrived meanwhile in one go: at
2000 reports/s central's CPU per report went from 76-89 µs to 56-57 µs (docs/benchmarks.md). A
backlog's large reads follow each other at once.

**Calls first.** While a call is being set up the connection neither reads nor hands reports to
ingest (:mod:`vaka.central.broker.calls_first`); what the broker sends waits as above.

gmqtt is pinned (``vaka-central``'s dependencies); tests/test_health_link.py checks the hook.
"""

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import gmqtt
from gmqtt.mqtt.connection import MQTTConnection
from gmqtt.mqtt.constants import MQTTv50
from gmqtt.mqtt.protocol import MQTTProtocol

from vaka.central.broker.acks import PendingAcks, SessionHost, hand_over, puback_packets
from vaka.central.broker.calls_first import CallsFirst
from vaka.errors import LinkError
from vaka.protocol.backoff import backoff_delay
from vaka.provisioning.tls import client_tls_context

log = logging.getLogger(__name__)

#: how long a connection attempt may take up to the broker's CONNACK
CONNECT_TIMEOUT_S = 10.0
#: how long central waits for the broker to confirm its subscription (a broker resuming a large
#: backlog sends queued messages first and may be busy saving its store)
SUBSCRIBE_TIMEOUT_S = 120.0
#: how long a clean stop waits for the DISCONNECT to go out and the socket to close
CLOSE_TIMEOUT_S = 5.0
#: reports handed to ingest per turn of the event loop (see :meth:`HealthSession.take`)
HAND_OVER_PER_TURN = 64
#: how long the socket rests after a small read, so that the next read brings many reports
COALESCE_S = 0.01
#: a read at least this large (a backlog draining) is followed at once by the next
COALESCE_BELOW = 16 * 1024


class _GatedProtocol(MQTTProtocol):
    """gmqtt's protocol, reading only while its gate is open (see the module's text)."""

    def __init__(self, gate: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        #: returns once the connection may read
        self.gate = gate
        #: the socket rests after a small read (see :data:`COALESCE_S`)
        self._resting = False

    async def read(self, n: int = -1) -> bytes:
        await self.gate()
        data: bytes = await super().read(n)
        return data

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if len(data) < COALESCE_BELOW and not self._resting and self._transport is not None:
            socket_transport = under_tls(self._transport)
            if not socket_transport.is_closing():
                self._resting = True
                socket_transport.pause_reading()
                asyncio.get_running_loop().call_later(COALESCE_S, self._read_on, socket_transport)

    def _read_on(self, socket_transport: asyncio.Transport) -> None:
        self._resting = False
        if not socket_transport.is_closing():
            socket_transport.resume_reading()


def under_tls(transport: asyncio.Transport) -> asyncio.Transport:
    """The socket's own transport under asyncio's TLS transport (Python 3.11's ``sslproto``
    keeps it as ``_ssl_protocol._transport``); ``transport`` itself if it is not there.

    Resting the TLS transport alone would leave every arriving segment still waking the loop to
    be read into the TLS buffer; resting the socket's transport lets them gather in the kernel.
    """
    protocol = getattr(transport, "_ssl_protocol", None)
    under = getattr(protocol, "_transport", None)
    return under if isinstance(under, asyncio.Transport) else transport


class _HealthClient(gmqtt.Client):
    """gmqtt's client with QoS 1 acknowledgements and reconnects left to the session."""

    def __init__(self, session: "HealthSession", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session = session
        #: set when the connection is gone (the broker closed it, or the socket did)
        self.ended = asyncio.Event()
        self.suback: asyncio.Future[list[int]] | None = None

    def _handle_qos_1_publish_packet(
        self, mid: int, packet: bytes, print_topic: str, _properties: Any
    ) -> None:
        # Anything escaping here would leave the message unacknowledged for the connection's life.
        try:
            self.session.take(print_topic, packet, mid, 1)
        except Exception:
            self.session.link.handler_failures["link"] += 1
            log.exception("central could not take a health message; acknowledged and dropped")
            self.session.pending.add(mid, 1, None)
            self.session.ack_ready()

    async def _create_connection(
        self, host: str, port: int, ssl: Any, clean_session: bool, keepalive: int
    ) -> MQTTConnection:
        # gmqtt's own, with the gated protocol (and no reconnecting state: there is none here)
        self._clear_topics_aliases()
        transport, protocol = await asyncio.get_running_loop().create_connection(
            lambda: _GatedProtocol(self.session.may_read), host, port, ssl=ssl
        )
        connection = MQTTConnection(transport, protocol, clean_session, keepalive)
        connection.set_handler(self)
        return connection

    async def reconnect(self, delay: bool = False) -> None:
        """The session reconnects, on a new client: a lost connection stays lost here."""
        return


class HealthSession:
    """Central's health connection: connect, subscribe, take messages, acknowledge after commit;
    reconnect with backoff until cancelled."""

    def __init__(
        self,
        link: SessionHost,
        identity: str,
        cert: Path,
        key: Path,
        filters: list[str],
        session_expiry_s: int,
        calls_first: CallsFirst | None = None,
    ) -> None:
        self.link = link
        self.identity = identity
        self.cert = cert
        self.key = key
        self.filters = filters
        self.session_expiry_s = session_expiry_s
        #: the connection that may be written to (``None`` while there is none)
        self.client: _HealthClient | None = None
        self.connected = asyncio.Event()
        self.pending = PendingAcks(self.ack_ready)
        #: parsed messages not yet handed to their handler, in arrival order
        self._intake: deque[tuple[str, bytes, int, int]] = deque()
        self._handing_over = False
        #: open while the connection may read: closed while a window of reports is unacknowledged
        self.reading = asyncio.Event()
        self.reading.set()
        #: how often reading was held (a broker that keeps to the window never makes it grow)
        self.holds = 0
        #: health gives way to calls being set up (see :mod:`vaka.central.broker.calls_first`)
        self.calls_first = calls_first or CallsFirst(0)
        self._hand_over_later: asyncio.Task[None] | None = None

    @property
    def unacked(self) -> int:
        """Messages received and not yet acknowledged."""
        return len(self._intake) + len(self.pending)

    def _new_client(self) -> _HealthClient:
        client = _HealthClient(
            self,
            client_id=self.identity,
            # No session to resume when none is kept (the broker would start a new one anyway).
            clean_session=self.session_expiry_s == 0,
            session_expiry_interval=self.session_expiry_s,
            receive_maximum=self.link.settings.receive_maximum,
        )
        # QoS 0 (a unit may publish so) goes by gmqtt's on_message, with nothing to acknowledge.
        client.on_message = lambda _c, topic, payload, _qos, _props: self.take(topic, payload, 0, 0)
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        return client

    def take(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """One message from the broker, to be handed to its handler in arrival order.

        gmqtt parses everything one socket read brought in one go: during a backlog's drain
        that is hundreds of reports. Handed to ingest at once they would hold the event loop
        for each read's whole batch, and signalling on the main connection (a night check
        dialled during the drain) would wait behind them; so they go to ingest in slices of
        :data:`HAND_OVER_PER_TURN`, one slice per turn of the loop.
        """
        self._intake.append((topic, payload, mid, qos))
        if self.reading.is_set() and self.unacked >= self.link.settings.receive_maximum:
            self.reading.clear()  # see the module's text
            self.holds += 1
        if not self._handing_over:
            self._handing_over = True
            asyncio.get_running_loop().call_soon(self._hand_over_some)

    async def may_read(self) -> None:
        """Return once the connection may read: no window held, no call being set up."""
        free = self.calls_first.free
        while not (self.reading.is_set() and free.is_set()):
            await self.reading.wait()
            await free.wait()

    async def _hand_over_when_free(self) -> None:
        await self.calls_first.free.wait()
        self._hand_over_later = None
        self._hand_over_some()

    def _hand_over_some(self) -> None:
        if not self.calls_first.free.is_set():  # a call is being set up: the reports wait
            if self._hand_over_later is None:
                self._hand_over_later = asyncio.get_running_loop().create_task(
                    self._hand_over_when_free()
                )
            return
        intake = self._intake
        try:
            for _ in range(min(len(intake), HAND_OVER_PER_TURN)):
                topic, payload, mid, qos = intake.popleft()
                self.pending.add(mid, qos, hand_over(self.link, topic, payload))
        finally:
            if intake:
                asyncio.get_running_loop().call_soon(self._hand_over_some)
            else:
                self._handing_over = False
        self.ack_ready()

    def ack_ready(self) -> None:
        """Acknowledge, in arrival order and in one write, every message whose commit is done."""
        client = self.client
        if client is None:  # connected, but the client not handed over yet: acknowledge later
            return
        mids = [mid for mid, qos in self.pending.ready() if qos == 1]
        if mids:
            client._connection.send_package(puback_packets(mids))
        if not self.reading.is_set() and self.unacked <= self.link.settings.receive_maximum // 2:
            self.reading.set()

    @staticmethod
    def _on_subscribe(client: _HealthClient, mid: int, granted: tuple[int, ...], _p: Any) -> None:
        if client.suback is not None and not client.suback.done():
            client.suback.set_result(list(granted))

    def _on_disconnect(self, client: _HealthClient, _packet: bytes) -> None:
        if self.client is client:
            self.client = None  # nothing more is written on a connection that is closing
        client.ended.set()
        if client.suback is not None and not client.suback.done():
            client.suback.set_exception(LinkError("the connection closed before the SUBACK"))

    async def _connect(self, client: _HealthClient) -> None:
        s = self.link.settings
        tls = client_tls_context(s.server_ca, self.cert, self.key)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await client.connect(s.host, s.port, ssl=tls, keepalive=s.keepalive_s, version=MQTTv50)

    async def _subscribe(self, client: _HealthClient) -> None:
        client.suback = asyncio.get_running_loop().create_future()
        client.subscribe([gmqtt.Subscription(f, qos=1) for f in self.filters])
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
            granted = await client.suback
        if any(code >= 0x80 for code in granted):
            raise LinkError(f"the broker refused {self.filters}: reason codes {granted}")

    async def run(self) -> None:
        """Connect, subscribe and take messages until cancelled; reconnect with backoff."""
        attempt = 0
        while True:
            client = self._new_client()
            try:
                await self._connect(client)
                self.link.connections += 1
                # A resumed session's messages come from the CONNACK on, before the SUBACK:
                # their acknowledgements need the client already.
                self.client = client
                self.ack_ready()
                await self._subscribe(client)
                self.connected.set()
                self.link.session_changed()
                attempt = 0
                log.info("%s subscribed to %s", self.identity, ", ".join(self.filters))
                await client.ended.wait()
                log.warning("%s: broker connection lost", self.identity)
            except (OSError, TimeoutError, LinkError, gmqtt.MQTTConnectError) as err:
                log.warning("%s: broker connection lost or refused: %s", self.identity, err)
            except Exception as err:
                log.error("%s cannot connect to the broker: %s", self.identity, err)
            finally:
                self._forget()
                await self._close(client)
            delay = backoff_delay(attempt, 0.5, 30.0)
            attempt += 1
            await asyncio.sleep(delay)

    def _forget(self) -> None:
        """The connection has ended: its unacknowledged messages come again on the next one
        (persistent session), and their message ids mean nothing there."""
        self.client = None
        self.reading.set()  # the next connection reads from its start
        self._intake.clear()
        self.pending.clear()
        self.connected.clear()
        self.link.session_changed()

    @staticmethod
    async def _close(client: _HealthClient) -> None:
        """End ``client``'s connection: a DISCONNECT (the session stays at the broker for its
        expiry) if it is still up, then the socket and gmqtt's keepalive timer, bounded in time."""
        connection = client._connection
        if connection is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                if client.ended.is_set():
                    await connection.close()  # gone or going: nothing more to say to the broker
                else:
                    await client.disconnect()
