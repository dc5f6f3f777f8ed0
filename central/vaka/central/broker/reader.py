"""Central's reading side of an MQTT connection: whole buffers in, PUBLISH packets straight out.

paho reads a packet with three to five ``recv`` calls (the command byte, each byte of the
remaining length, the rest), each a call into the TLS layer, then builds a ``Properties``
object, an ``MQTTMessage`` and a debug log call per PUBLISH and matches the topic against its
callbacks. At thousands of health reports a second that was about half of central's CPU per
message. :func:`install` replaces the paho client's ``loop_read`` (which aiomqtt calls when the
socket is readable) with one that reads everything the socket has in large ``recv`` calls,
cuts it into packets itself, hands each QoS 0/1 PUBLISH to ``on_publish`` as
``(topic, payload, mid, qos)``, and gives every other packet (CONNACK, SUBACK, PUBACK,
PINGRESP, DISCONNECT, a QoS 2 PUBLISH) to paho's own handler as paho would have read it.

This reaches into paho's private reading state (``_sock``, ``_in_packet``, ``_packet_handle``,
``_loop_rc_handle``, ``_last_bytes_received``) of the pinned paho-mqtt 2.2.0;
``tests/test_broker_reader.py`` checks it against a real broker, so an upgrade that changes
them fails there, not in production.
"""

import ssl
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.exception import MalformedPacket as PahoMalformed

if TYPE_CHECKING:
    from paho.mqtt.client import _InPacket

#: ``on_publish(topic, payload, mid, qos)``
OnPublish = Callable[[str, bytes, int, int], None]
#: how much one ``recv`` asks for (TLS hands out at most one record, 16 KiB, per call)
READ_SIZE = 256 * 1024
_PUBLISH = 0x30


class MalformedPacket(ValueError):
    """The broker sent something that is not MQTT 5: the connection is dropped."""


def _in_packet(command: int = 0, body: bytes = b"") -> "_InPacket":
    """paho's reading state: empty, or holding one whole packet as paho would have read it."""
    return {
        "command": command,
        "have_remaining": 1 if command else 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(body),
        "packet": bytearray(body),
        "to_process": 0,
        "pos": 0,
    }


class PacketReader:
    """Reads whole buffers from one paho client's socket and splits them into packets."""

    def __init__(self, client: paho.Client, on_publish: OnPublish) -> None:
        self.client = client
        self.on_publish = on_publish
        self._buffer = bytearray()
        self._socket: Any = None
        #: PUBLISH packets taken here, and the other packets handed to paho by type (the
        #: command's high nibble: 0x20 CONNACK, 0x90 SUBACK, 0xD0 PINGRESP...)
        self.publishes = 0
        self.to_paho: Counter[int] = Counter()

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        """paho's ``loop_read``: read what there is and handle every complete packet."""
        del max_packets  # everything the socket has is read
        client = self.client
        sock = client._sock
        if sock is None:
            return paho.MQTTErrorCode.MQTT_ERR_NO_CONN
        if sock is not self._socket:  # a new connection: nothing of the old one counts
            self._socket = sock
            self._buffer.clear()
        rc = self._fill(sock)
        if len(self._buffer):
            with client._msgtime_mutex:
                client._last_bytes_received = paho.time_func()
            try:
                handled = self._handle_packets()
            except MalformedPacket as err:
                client._easy_log(paho.MQTT_LOG_ERR, "malformed packet from the broker: %s", err)
                handled = paho.MQTTErrorCode.MQTT_ERR_PROTOCOL
            if handled > 0:
                return client._loop_rc_handle(handled)
        if rc > 0:
            return client._loop_rc_handle(rc)
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _fill(self, sock: Any) -> paho.MQTTErrorCode:
        """Read until the socket (and the TLS layer's buffer) would block."""
        while True:
            try:
                data = sock.recv(READ_SIZE)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                return paho.MQTTErrorCode.MQTT_ERR_SUCCESS
            except ssl.SSLWantWriteError:
                self.client._call_socket_register_write()
                return paho.MQTTErrorCode.MQTT_ERR_SUCCESS
            except OSError as err:
                self.client._easy_log(paho.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
                return paho.MQTTErrorCode.MQTT_ERR_CONN_LOST
            if not data:
                return paho.MQTTErrorCode.MQTT_ERR_CONN_LOST
            self._buffer += data

    def _handle_packets(self) -> paho.MQTTErrorCode:
        """Handle each complete packet in the buffer; keep the incomplete rest."""
        buf = self._buffer
        end = len(buf)
        pos = 0
        try:
            while pos + 2 <= end:
                command = buf[pos]
                # the remaining length: 1 to 4 bytes, 7 bits each, low bits first
                length = 0
                shift = 0
                at = pos + 1
                while True:
                    if at >= end:
                        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS
                    byte = buf[at]
                    at += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise MalformedPacket("remaining length longer than 4 bytes")
                if at + length > end:
                    return paho.MQTTErrorCode.MQTT_ERR_SUCCESS
                body = bytes(buf[at : at + length])
                pos = at + length
                if command & 0xF0 == _PUBLISH and not command & 0x04:  # QoS 0 or 1
                    self._publish(command, body)
                    continue
                rc = self._to_paho(command, body)
                if rc > 0:
                    return rc
                if self.client._sock is not self._socket:  # paho closed the connection
                    return paho.MQTTErrorCode.MQTT_ERR_SUCCESS
            return paho.MQTTErrorCode.MQTT_ERR_SUCCESS
        finally:
            del buf[:pos]

    def _publish(self, command: int, body: bytes) -> None:
        """A QoS 0 or 1 PUBLISH (MQTT 5): topic, packet id, properties (skipped), payload."""
        qos = (command & 0x06) >> 1
        if len(body) < 2:
            raise MalformedPacket("PUBLISH without a topic length")
        topic_end = 2 + int.from_bytes(body[:2], "big")
        mid = 0
        at = topic_end
        if qos:
            mid = int.from_bytes(body[at : at + 2], "big")
            at += 2
        # the property length (a variable byte integer), then the properties
        props = 0
        shift = 0
        while True:
            if at >= len(body):
                raise MalformedPacket("PUBLISH cut short in its properties")
            byte = body[at]
            at += 1
            props |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MalformedPacket("property length longer than 4 bytes")
        at += props
        if at > len(body):
            raise MalformedPacket("PUBLISH cut short in its properties")
        try:
            topic = body[2:topic_end].decode()
        except UnicodeDecodeError as err:
            raise MalformedPacket("a topic that is not UTF-8") from err
        self.publishes += 1
        self.on_publish(topic, body[at:], mid, qos)

    def _to_paho(self, command: int, body: bytes) -> paho.MQTTErrorCode:
        """Any other packet goes to paho's handler, read as paho reads it."""
        client = self.client
        self.to_paho[command & 0xF0] += 1
        client._in_packet = _in_packet(command, body)
        try:
            rc: paho.MQTTErrorCode = client._packet_handle()
        except PahoMalformed as err:
            client._easy_log(paho.MQTT_LOG_DEBUG, "Received malformed packet: %s", err)
            rc = paho.MQTTErrorCode.MQTT_ERR_PROTOCOL
        finally:
            client._in_packet = _in_packet()
        return rc


def install(client: paho.Client, on_publish: OnPublish) -> PacketReader:
    """Read ``client``'s connection with a :class:`PacketReader`; returns it."""
    reader = PacketReader(client, on_publish)
    client.loop_read = reader.loop_read  # type: ignore[method-assign]
    return reader
