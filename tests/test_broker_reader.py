"""Central's packet reader against a real Mosquitto: every message, whole and in order.

Central's connections are read by :mod:`vaka.central.broker.reader` (whole buffers, its own
PUBLISH parsing) instead of paho's byte-by-byte reading. A unit publishes a burst of QoS 1 and
QoS 0 messages of many sizes, some larger than a TLS record (16 KiB), so packets are cut across
reads; central gets each exactly once, in order, byte for byte, and acknowledges them. The
packets the reader hands to paho (CONNACK, SUBACK, PINGRESP) keep the connection up: it stays
the one connection through two keepalive periods.
"""

import asyncio
import contextlib
import random
from typing import Any

from vaka.central.broker.mqtt import CentralLink
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.protocol.topics import Channel, device_topic

UNIT = "u-reader-1"
PINGRESP = 0xD0


async def test_the_reader_takes_every_message_whole_and_in_order(stack: LocalStack) -> None:
    settings = stack.central_config().mqtt
    got: list[tuple[str, bytes]] = []

    def sink(topic: str, payload: Any) -> None:
        got.append((topic, bytes(payload)))

    link = CentralLink(settings, sink)
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.connected.wait(), 30)
        rng = random.Random(7)
        sizes = [
            rng.choice([1, 60, 127, 128, 500, 16_383, 16_384, 40_000, 200_000]) for _ in range(300)
        ]
        sent: list[tuple[str, bytes]] = []
        async with stack.broker.client(UNIT) as unit:
            for n, size in enumerate(sizes):
                channel = Channel.HEALTH if n % 3 else Channel.EVENTS
                topic = device_topic(UNIT, channel)
                payload = (f"{n:05d}".encode() * (size // 5 + 1))[:size]
                # QoS 1 awaited one by one keeps the order at the broker across both sessions'
                # subscriptions; every seventh goes at QoS 0
                await unit.publish(topic, payload, qos=0 if n % 7 == 0 else 1)
                sent.append((topic, payload))
        await wait_for(lambda: len(got) >= len(sent), 60, what="every message at central")
        health = [m for m in got if m[0].endswith("/health")]
        events = [m for m in got if m[0].endswith("/events")]
        assert health == [m for m in sent if m[0].endswith("/health")]
        assert events == [m for m in sent if m[0].endswith("/events")]
        await wait_for(lambda: link.stats()["unacked"] == 0, 10, what="everything acknowledged")

        readers = [s.reader for s in link.sessions]
        assert all(r is not None for r in readers)
        assert sum(r.publishes for r in readers if r is not None) == len(sent)

        def pinged() -> bool:
            return all(r is not None and r.to_paho[PINGRESP] >= 2 for r in readers)

        await wait_for(pinged, 4 * settings.keepalive_s, what="two keepalive rounds answered")
        assert link.connections == len(link.sessions)
        assert link.connected.is_set()
        assert not link.handler_failures
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
