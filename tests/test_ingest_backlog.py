"""A backlog waits at the broker, not in central, and never ahead of a night check.

Central (a process) is stopped while units go on reporting health, so thousands of reports
queue at the broker for its persistent session; then it starts again. While it drains them its
RSS stays bounded (the Receive Maximum keeps the rest at the broker), a night check dialled at
once sets up in about its normal time (signalling has a connection of its own, so it does not
queue behind the health reports), and at the end every unit's newest report is stored. The
bench does the same with 60 000 reports (``python -m bench.fleet``, docs/benchmarks.md).
"""

import asyncio
import threading
import time

import psutil
import pytest
from sqlalchemy import select

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, UNIT, load_directory, running_agent
from vaka.central.service import CentralService
from vaka.central.settings.passwords import PasswordHashing
from vaka.central.storage.engine import open_engine
from vaka.central.storage.tables import health
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.protocol.messages import HealthMessage, HealthPayload, encode
from vaka.protocol.topics import Channel, device_topic
from vaka.staff.client import StaffClient

UNITS = [f"u-backlog-{i:02d}" for i in range(20)]
PER_UNIT = 400  # 8 000 reports
MAX_RSS_MB = 150


def report(n: int) -> bytes:
    payload = HealthPayload(
        interval_s=30, clock_synced=True, agent_version="1.0", config_version=n, uptime_s=n
    )
    return encode(HealthMessage(ts=1_700_000_000 + n, payload=payload))


async def queue_reports(stack: LocalStack) -> None:
    """Every unit publishes PER_UNIT health reports (QoS 1) while no central is there."""

    async def one(unit: str) -> None:
        async with stack.broker.client(unit) as client:
            topic = device_topic(unit, Channel.HEALTH)
            for start in range(0, PER_UNIT, 50):
                await asyncio.gather(
                    *(client.publish(topic, report(n), qos=1) for n in range(start, start + 50))
                )

    await asyncio.gather(*(one(unit) for unit in UNITS))


async def night_check(staff: StaffClient) -> float:
    """Seconds from the dial to the first decoded frame."""
    started = time.perf_counter()
    call = await staff.dial(UNIT, "night_check")
    try:
        await call.next_frame(timeout=20)
        return time.perf_counter() - started
    finally:
        await call.hangup()


@pytest.mark.usefixtures("loopback_ice")
async def test_a_backlog_drains_from_the_broker_while_a_night_check_sets_up(
    stack: LocalStack, central: CentralService
) -> None:
    # The product's password cost: the log-in's 64 MiB is part of what central holds.
    config = stack.central_config(passwords=PasswordHashing())
    await load_directory(central)
    async with running_agent(stack.broker) as unit:
        await unit.agent.link.wait_online(30)
        async with StaffClient(central.url) as staff:
            await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
            before = await night_check(staff)
        await central.stop()  # its sessions stay at the broker
        await queue_reports(stack)

        process = stack.start_central_process(config=config)
        ps = psutil.Process(process.proc.pid)
        peak = [0.0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], ps.memory_info().rss / 2**20)
                except psutil.Error:
                    return
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        engine = open_engine(config.database.url)

        def newest() -> dict[str, int]:
            with engine.connect() as conn:
                rows = conn.execute(select(health.c.device_id, health.c.sent_at)).all()
            return {d: int(s) - 1_700_000_000 for d, s in rows if d.startswith("u-backlog-")}

        try:
            async with StaffClient(process.url) as staff:
                # The log-in first: its password check (argon2, 64 MiB for a moment) is not
                # the backlog's; RSS is sampled from the dial on.
                await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
                at_login = ps.memory_info().rss / 2**20
                sampler.start()
                during = await night_check(staff)
            await wait_for(
                lambda: newest() == dict.fromkeys(UNITS, PER_UNIT - 1),
                60,
                what="every unit's newest report stored",
            )
        finally:
            done.set()
            if sampler.is_alive():
                sampler.join(2)
            engine.dispose()
    print(
        f"\n{len(UNITS) * PER_UNIT} reports queued; central's peak RSS {peak[0]:.0f} MB "
        f"(after the log-in: {at_login:.0f} MB); "
        f"night check {before * 1000:.0f} ms before, {during * 1000:.0f} ms during the drain"
    )
    assert peak[0] < MAX_RSS_MB
    assert during < max(2 * before, before + 1.5)
