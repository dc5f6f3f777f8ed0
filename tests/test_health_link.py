"""Central's health connection (gmqtt): acknowledgements only after the commit, in order, in one
write; a poison report is refused, counted and acknowledged, and the connection goes on.

The first test feeds raw PUBLISH packets through the pinned gmqtt's own parser, so it also
checks that the hook central takes QoS 1 messages at is still gmqtt's. The others run against the
real stack: a central killed (``kill -9``) between receiving a report and committing it gets the
report again from the broker; a Receive Maximum of 2 makes the broker stop sending if a refused
report were left unacknowledged.
"""

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from gmqtt.mqtt.protocol import MQTTProtocol
from sqlalchemy import Engine, select

from tests.test_record_poison import POISON
from vaka.central.broker.health_link import HAND_OVER_PER_TURN, HealthSession, under_tls
from vaka.central.broker.mqtt import CentralLink
from vaka.central.settings.config import MqttSection
from vaka.central.storage.engine import open_engine
from vaka.central.storage.tables import health
from vaka.devstack.central import running_central
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.protocol.messages import HealthMessage, HealthPayload, encode
from vaka.protocol.topics import Channel, device_topic

UNIT = "u-health-link"


class FakeConnection:
    """gmqtt's connection, as far as central writes to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self._protocol = MQTTProtocol  # gmqtt reads the protocol version from it

    def send_package(self, package: bytes) -> None:
        self.writes.append(bytes(package))

    def acked(self) -> list[int]:
        """The message ids of every PUBACK written, in order (each 0x40, 2, id)."""
        data = b"".join(self.writes)
        assert len(data) % 4 == 0
        assert all(data[at : at + 2] == bytes([0x40, 2]) for at in range(0, len(data), 4))
        return [int.from_bytes(data[at + 2 : at + 4], "big") for at in range(0, len(data), 4)]


def publish_packet(topic: str, mid: int, payload: bytes) -> tuple[int, bytes]:
    """A QoS 1 PUBLISH as gmqtt hands it to its handler: command byte and the packet's body."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + mid.to_bytes(2, "big") + b"\x00" + payload
    return 0x32, body


def link_with_health(tmp_path: Path, sink: Any, **settings: Any) -> tuple[CentralLink, Any]:
    files = {name: tmp_path / name for name in ("ca", "cert", "key", "hcert", "hkey")}
    mqtt = MqttSection(
        server_ca=files["ca"],
        cert=files["cert"],
        key=files["key"],
        health_cert=files["hcert"],
        health_key=files["hkey"],
        **settings,
    )
    link = CentralLink(mqtt, sink)
    session = link.sessions[1]
    assert isinstance(session, HealthSession)
    return link, session


async def test_acks_wait_for_the_commit_keep_the_order_and_leave_in_one_write(
    tmp_path: Path,
) -> None:
    loop = asyncio.get_running_loop()
    commits: dict[str, asyncio.Future[None]] = {}

    def sink(topic: str, payload: Any) -> object:
        if payload == b"poison":
            return None  # refused: acknowledged, but not before the ones ahead of it
        if payload == b"bug":
            raise RuntimeError("a handler bug")
        return commits.setdefault(payload.decode(), loop.create_future())

    link, session = link_with_health(tmp_path, sink)
    client = session._new_client()
    connection = FakeConnection()
    client._connection = connection
    session.client = client
    topic = device_topic(UNIT, Channel.HEALTH)
    for mid, payload in [(1, b"a"), (2, b"poison"), (3, b"a"), (4, b"bug"), (5, b"b"), (6, b"b")]:
        client._handle_packet(*publish_packet(topic, mid, payload))
    assert connection.writes == [] and session.unacked == 6
    await asyncio.sleep(0)  # handed over to the sink
    assert connection.writes == [] and session.unacked == 6
    commits["b"].set_result(None)
    await asyncio.sleep(0)
    assert connection.writes == []  # "a" is not committed: nothing behind it goes either
    commits["a"].set_result(None)
    await asyncio.sleep(0)
    assert connection.acked() == [1, 2, 3, 4, 5, 6]
    assert len(connection.writes) == 1  # one write (one TLS record) for all of them
    assert link.handler_failures == {"health": 1}
    assert link.stats()["unacked"] == 0


async def test_a_large_read_reaches_the_sink_in_slices_one_per_turn(tmp_path: Path) -> None:
    """What one socket read brought goes to ingest a slice per turn of the event loop, so the
    main connection's signalling gets its turns in between."""
    handed: list[bytes] = []
    link, session = link_with_health(tmp_path, lambda _t, payload: handed.append(payload))
    client = session._new_client()
    connection = FakeConnection()
    client._connection = connection
    session.client = client
    topic = device_topic(UNIT, Channel.HEALTH)
    for mid in range(1, 201):
        client._handle_packet(*publish_packet(topic, mid, b"%d" % mid))
    assert handed == []
    slices = []
    while len(handed) < 200:
        await asyncio.sleep(0)
        slices.append(len(handed))
    assert slices[0] == HAND_OVER_PER_TURN and len(slices) == 4
    assert handed == [b"%d" % mid for mid in range(1, 201)]
    assert connection.acked() == list(range(1, 201))  # nothing to wait for: each slice at once
    assert link.stats()["unacked"] == 0


async def test_acks_of_a_lost_connection_never_reach_the_next(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    committed: asyncio.Future[None] = loop.create_future()
    link, session = link_with_health(tmp_path, lambda _t, _p: committed)
    first, second = session._new_client(), session._new_client()
    old, new = FakeConnection(), FakeConnection()
    first._connection, second._connection = old, new
    session.client = first
    first._handle_packet(*publish_packet(device_topic(UNIT, Channel.HEALTH), 7, b"{}"))
    await asyncio.sleep(0)  # handed over to the sink
    assert session.pending and not session._intake
    session._on_disconnect(first, b"")  # the connection is gone before the commit
    assert session.client is None and first.ended.is_set()
    committed.set_result(None)
    await asyncio.sleep(0)
    assert old.writes == []  # nothing is written on a closing connection
    session._forget()  # as run() does when a connection has ended
    session.client = second
    session.ack_ready()
    assert new.writes == [] and link.stats()["unacked"] == 0  # id 7 may name another message


def report(n: int) -> bytes:
    payload = HealthPayload(
        interval_s=30, clock_synced=True, agent_version="1.0", config_version=n, uptime_s=n
    )
    return encode(HealthMessage(ts=1_700_000_000 + n, payload=payload))


def stored(engine: Engine) -> int | None:
    """The unit's stored health sample: its number (see :func:`report`), or ``None``."""
    with engine.connect() as conn:
        row = conn.execute(select(health.c.sent_at).where(health.c.device_id == UNIT)).first()
    return None if row is None else int(row[0]) - 1_700_000_000


async def test_a_report_received_but_not_committed_comes_again_after_a_kill(
    stack: LocalStack,
) -> None:
    """Central's health connection takes a report it cannot commit (the test holds the
    database's write lock), central is killed (``kill -9``), and the broker sends the report
    again to the restarted central: it had not been acknowledged."""
    config = stack.central_config()
    process = stack.start_central_process(config=config)
    db = config.database.url.removeprefix("sqlite:///")
    engine = open_engine(config.database.url)
    lock = sqlite3.connect(db, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # every writer waits, then fails: nothing commits
        async with stack.broker.client(UNIT) as unit:
            await unit.publish(device_topic(UNIT, Channel.HEALTH), report(1), qos=1)
        await wait_for(
            lambda: "keeping" in process.log(), 30, what="central holding the uncommitted report"
        )
        await asyncio.to_thread(process.kill)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    try:
        assert await asyncio.to_thread(stored, engine) is None
        await asyncio.to_thread(process.start)

        async def arrived() -> bool:
            return await asyncio.to_thread(stored, engine) == 1

        await wait_for(arrived, 20, what="the report delivered again to the restarted central")
    finally:
        engine.dispose()


async def test_poison_on_the_health_connection_is_counted_and_acknowledged(
    stack: LocalStack,
) -> None:
    """Every poison report is refused and counted; with a Receive Maximum of 2 the broker sends
    nothing more until central acknowledges, so the good reports behind the poison arriving
    shows each refused one was acknowledged. The connection is never made again."""
    base = stack.central_config()
    mqtt = base.mqtt.model_copy(update={"receive_maximum": 2})
    config = base.model_copy(update={"mqtt": mqtt})
    async with running_central(config) as central:
        await asyncio.wait_for(central.link.connected.wait(), 30)
        connections = central.link.connections
        before = central.ingest.refusals.total
        health_session = central.link.sessions[1]
        assert isinstance(health_session, HealthSession)
        topic = device_topic(UNIT, Channel.HEALTH)
        rounds = 3
        async with stack.broker.client(UNIT) as unit:
            for n in range(rounds):
                for payload in POISON.values():
                    await unit.publish(topic, payload, qos=1)
                await unit.publish(topic, report(n), qos=1)
        await wait_for(
            lambda: central.ingest.refusals.total - before == rounds * len(POISON),
            30,
            what="every poison report refused",
        )
        engine = central.engine

        async def newest() -> bool:
            return await asyncio.to_thread(stored, engine) == rounds - 1

        await wait_for(newest, 30, what="the last good report stored")
        await wait_for(lambda: central.link.stats()["unacked"] == 0, 10, what="all acknowledged")
        await asyncio.sleep(0.3)  # a double count would show by now
        assert central.ingest.refusals.total - before == rounds * len(POISON)
        assert central.link.connections == connections  # not one reconnect
        assert health_session.connected.is_set() and central.link.connected.is_set()
        assert central.link.stats()["handler_failures"] == {}
        assert "unexpected" not in central.ingest.stats()["refused"]  # the guard caught each
    # A clean stop: a DISCONNECT (Mosquitto logs "closed its connection" for a socket closed
    # without one), so the session stays for its expiry and no will or error is logged.
    await wait_for(
        lambda: f"Client {health_session.identity} disconnected." in stack.broker.log(),
        10,
        what="the health connection's DISCONNECT",
    )


async def test_central_keeps_to_its_window_when_the_broker_does_not(stack: LocalStack) -> None:
    """Debian 12's Mosquitto (2.0.11) sends a lagging subscriber far more than its Receive
    Maximum: each acknowledgement of the oldest message in flight lets a whole window more out.
    Reports queue at the broker while central's database is held; once it is free, central
    commits and acknowledges a window at a time, and the broker floods it. Central stops reading
    while a window's worth is unacknowledged, so it holds at most that window and what one
    socket read brought, not the queue; every report is committed, on the same connection."""
    base = stack.central_config()
    window = 50
    mqtt = base.mqtt.model_copy(update={"receive_maximum": window})
    config = base.model_copy(update={"mqtt": mqtt})
    sent = 20_000  # about 5 MB: more than the socket reads' buffers hold
    async with running_central(config) as central:
        await asyncio.wait_for(central.link.connected.wait(), 30)
        connections = central.link.connections
        session = central.link.sessions[1]
        assert isinstance(session, HealthSession)
        peak = [0]
        take = session.take

        def counting_take(topic: str, payload: bytes, mid: int, qos: int) -> None:
            take(topic, payload, mid, qos)
            peak[0] = max(peak[0], session.unacked)

        session.take = counting_take  # type: ignore[method-assign]
        topic = device_topic(UNIT, Channel.HEALTH)
        db = config.database.url.removeprefix("sqlite:///")
        lock = sqlite3.connect(db, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")  # nothing commits: the reports queue at the broker
            async with stack.broker.client(UNIT) as unit:
                for first in range(0, sent, 20):
                    await asyncio.gather(
                        *(unit.publish(topic, report(n), qos=1) for n in range(first, first + 20))
                    )
            assert peak[0] <= window
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        engine = central.engine

        async def newest() -> bool:
            return await asyncio.to_thread(stored, engine) == sent - 1

        await wait_for(newest, 60, what="the last report stored")
        await wait_for(lambda: central.link.stats()["unacked"] == 0, 20, what="all acknowledged")
        assert session.holds >= 1
        # A window and what one 64 KiB read brings (~250 reports); without the hold: ~18 000.
        assert peak[0] < 1000
        assert central.link.connections == connections


async def test_the_health_connection_rests_its_socket_not_only_the_tls_layer(
    stack: LocalStack,
) -> None:
    """Reads are gathered by resting the socket's own transport under asyncio's TLS one (a
    private attribute of Python 3.11's ``sslproto``): if an upgrade moves it, this fails rather
    than the gathering silently resting the TLS layer only."""
    async with running_central(stack.central_config()) as central:
        await asyncio.wait_for(central.link.connected.wait(), 30)
        session = central.link.sessions[1]
        assert isinstance(session, HealthSession) and session.client is not None
        tls = session.client._connection._transport
        under = under_tls(tls)
        assert under is not tls and under.get_extra_info("socket") is not None
        assert type(under).__name__ == "_SelectorSocketTransport"
        async with stack.broker.client(UNIT) as unit:
            await unit.publish(device_topic(UNIT, Channel.HEALTH), report(7), qos=1)
        engine = central.engine

        async def arrived() -> bool:
            return await asyncio.to_thread(stored, engine) == 7

        await wait_for(arrived, 20, what="a report through the resting socket")
        await wait_for(lambda: central.link.stats()["unacked"] == 0, 10, what="acknowledged")
