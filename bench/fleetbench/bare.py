"""The baseline: a bare MQTT subscriber of the same broker, to hold central's figures against.

One paho client (MQTT 5, TLS with a central identity's certificate, QoS 1, automatic
acknowledgements, its own non-shared subscription to every unit's health) that only counts what
arrives, in a child process whose CPU the bench samples like central's. What it spends per
message is the floor any MQTT client in Python pays on this machine; central's figure on top of
it is decoding, batching, the database and the acknowledgements after commit.
"""

from __future__ import annotations

import signal
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from vaka.protocol.topics import Channel, device_filter
from vaka.provisioning.tls import client_tls_context


def bare_main(conn: Connection, host: str, port: int, files: tuple[str, str, str], cn: str) -> None:
    """Child process: subscribe and count; answer ``count`` and ``stop`` over ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server_ca, cert, key = files
    received = 0
    subscribed = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1

    def on_connect(c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        c.subscribe(device_filter(Channel.HEALTH), qos=1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cn, protocol=mqtt.MQTTv5)
    client.tls_set_context(client_tls_context(Path(server_ca), Path(cert), Path(key)))
    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(host, port, keepalive=30, clean_start=True)
    client.loop_start()
    subscribed.wait(30)
    conn.send(("ready", subscribed.is_set()))
    try:
        while True:
            request = conn.recv()
            if request[0] == "count":
                conn.send((received, time.time()))
            elif request[0] == "stop":
                break
    except (EOFError, OSError):
        pass
    finally:
        client.disconnect()
        client.loop_stop()
