"""A killed central instance does not keep its share of the fleet's health.

The broker hands a shared subscription's messages to its members in turn, whether they are
connected or not. Two instances run as processes on one PostgreSQL database behind one
Mosquitto; four units report health in a fixed order, so with two members the same two units'
reports would fall to the same instance every time. Instance 1 is killed (``kill -9``): its
health connection's session outlives it only ``[mqtt] health_session_expiry_s``, after which
instance 2 takes every report, and each unit's health reaches the database within that bound.
Instance 1's main session (state, events, signalling) keeps its long expiry.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
from sqlalchemy import Engine, select

from vaka.central.broker.mqtt import CentralLink
from vaka.central.settings.config import CentralConfig, MqttSection
from vaka.central.storage.engine import open_engine
from vaka.central.storage.tables import health
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.protocol.messages import HealthMessage, HealthPayload, encode
from vaka.protocol.topics import Channel, device_topic

UNITS = [f"u-share-{n}" for n in range(1, 5)]
#: the health session's expiry in this test (the default is 30 s)
EXPIRY_S = 3
#: what the broker's session expiry check, the publishing pace and a batch commit may add
SLACK_S = 5.0
PERIOD_S = 0.2


def newest(engine: Engine) -> dict[str, float]:
    """Each unit's newest stored health sample: its send time."""
    with engine.connect() as conn:
        rows = conn.execute(select(health.c.device_id, health.c.sent_at)).all()
    return {device: sent for device, sent in rows if device in UNITS}


@contextlib.asynccontextmanager
async def reporting(stack: LocalStack) -> AsyncIterator[None]:
    """The units publish health (QoS 1) in the same order every ``PERIOD_S``, each publish
    acknowledged before the next, until the block ends."""
    async with contextlib.AsyncExitStack() as clients:
        units = [await clients.enter_async_context(stack.broker.client(u)) for u in UNITS]

        async def loop() -> None:
            while True:
                for unit, client in zip(UNITS, units, strict=True):
                    payload = HealthPayload(
                        interval_s=PERIOD_S,
                        clock_synced=True,
                        agent_version="1.0",
                        config_version=1,
                    )
                    message = encode(HealthMessage(ts=time.time(), payload=payload))
                    await client.publish(device_topic(unit, Channel.HEALTH), message, qos=1)
                await asyncio.sleep(PERIOD_S)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def every_unit_since(engine: Engine, since: float, timeout: float, what: str) -> float:
    """Wait until every unit has a sample sent after ``since``; seconds it took."""
    started = time.monotonic()

    async def fresh() -> bool:
        found = await asyncio.to_thread(newest, engine)
        return len(found) == len(UNITS) and min(found.values()) > since

    await wait_for(fresh, timeout, interval=0.1, what=what)
    return time.monotonic() - started


def test_the_health_session_is_short_lived_and_the_main_one_is_not(tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("ca", "cert", "key", "hcert", "hkey")}
    settings = MqttSection(
        server_ca=files["ca"],
        cert=files["cert"],
        key=files["key"],
        health_cert=files["hcert"],
        health_key=files["hkey"],
        health_session_expiry_s=0,
    )
    link = CentralLink(settings, sink=lambda _topic, _payload: None)
    main, health_session = link.sessions
    assert main.session_expiry_s == 3600
    assert health_session.session_expiry_s == 0
    assert main.filters and not any(f.endswith("/health") for f in main.filters)
    assert health_session.filters == ["$share/central/vaka/v1/dev/+/health"]


async def test_health_reaches_the_survivor_when_an_instance_is_killed(
    stack: LocalStack, postgres_url: str
) -> None:
    engine = open_engine(postgres_url, upgrade=True)
    try:

        def config(identity: str) -> CentralConfig:
            base = stack.central_config(identity)
            mqtt = base.mqtt.model_copy(update={"health_session_expiry_s": EXPIRY_S})
            return base.model_copy(update={"mqtt": mqtt})

        first = await asyncio.to_thread(
            stack.start_central_process, "central-1", config("central-1")
        )
        await asyncio.to_thread(stack.start_central_process, "central-2", config("central-2"))
        async with reporting(stack):
            await every_unit_since(engine, time.time(), 30, "health from every unit, both up")

            killed = time.time()
            await asyncio.to_thread(first.kill)
            took = await every_unit_since(
                engine, killed, EXPIRY_S + SLACK_S, "every unit's health through instance 2"
            )
            # ...and it keeps arriving, not only once.
            again = await every_unit_since(
                engine, time.time(), 3.0, "every unit's health again, promptly"
            )

            await asyncio.to_thread(first.start)
            await every_unit_since(engine, time.time(), 30, "health with instance 1 back")
        print(
            f"health session expiry {EXPIRY_S} s: every unit's health through instance 2 "
            f"{took:.1f} s after the kill, then again within {again:.2f} s"
        )
    finally:
        engine.dispose()
