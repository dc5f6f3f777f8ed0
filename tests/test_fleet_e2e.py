"""A simulated unit as central sees it, over a real broker: birth, will, restart, bad input."""

import asyncio
import json
import signal
import time

from tests.conftest import AgentFactory, collecting
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.central import unit_status
from vaka.devstack.polling import wait_for
from vaka.protocol import SignalMessage, SignalPayload, StateMessage, StatePayload, encode


async def test_unit_appears_online_within_two_seconds(
    central: CentralService, start_agent: AgentFactory
) -> None:
    started = time.monotonic()
    agent = start_agent("u-fast", "nightcam")
    await wait_for(lambda: unit_status(central, "u-fast"), 10, what="unit online")
    took = time.monotonic() - started
    print(f"u-fast online in central {took:.2f} s after the process started")
    assert await unit_status(central, "u-fast") == "online"
    assert took < 2.0, agent.log()
    record = await asyncio.to_thread(central.store.unit, "u-fast")
    assert record is not None and record.profile == "nightcam"


async def test_kill_9_marks_the_unit_offline_by_its_will(
    central: CentralService, start_agent: AgentFactory
) -> None:
    keepalive = 5
    agent = start_agent("u-killed", keepalive_s=keepalive)
    await wait_for(lambda: unit_status(central, "u-killed"), 10, what="unit online")
    online = await asyncio.to_thread(central.store.unit, "u-killed")
    assert online is not None
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait()
    killed = time.monotonic()

    async def offline() -> bool:
        return await unit_status(central, "u-killed") == "offline"

    await wait_for(offline, 1.5 * keepalive, what="will to mark the unit offline")
    print(f"offline {time.monotonic() - killed:.3f} s after kill -9")
    record = await asyncio.to_thread(central.store.unit, "u-killed")
    assert record is not None and record.presence.bdseq == online.presence.bdseq


async def test_clean_stop_is_reported_as_stopped(
    central: CentralService, start_agent: AgentFactory
) -> None:
    agent = start_agent("u-clean")
    await wait_for(lambda: unit_status(central, "u-clean"), 10, what="unit online")
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(10) == 0

    async def stopped() -> bool:
        return await unit_status(central, "u-clean") == "stopped"

    await wait_for(stopped, 5, what="stopped")


async def test_broker_restart_reconnects_and_rebirths_without_duplicates(
    broker: Broker, central: CentralService, start_agent: AgentFactory
) -> None:
    start_agent("u-restart")
    await wait_for(lambda: unit_status(central, "u-restart"), 10, what="unit online")
    before = await asyncio.to_thread(central.store.unit, "u-restart")
    assert before is not None
    broker.stop()
    await asyncio.sleep(0.5)
    broker.start()

    async def reborn() -> bool:
        record = await asyncio.to_thread(central.store.unit, "u-restart")
        return (
            record is not None
            and record.presence.status == "online"
            and record.presence.bdseq > before.presence.bdseq
        )

    await wait_for(reborn, 15, what="re-birth after broker restart")
    units = await asyncio.to_thread(central.store.units)
    assert [u.device_id for u in units].count("u-restart") == 1


async def test_bad_inbound_messages_are_refused_and_the_agent_keeps_serving(
    broker: Broker, central: CentralService, start_agent: AgentFactory
) -> None:
    start_agent("u-target", interval_s=1)
    await wait_for(lambda: unit_status(central, "u-target"), 10, what="unit online")
    bad = [
        b"garbage",
        b'{"v":1,"type":"signal","payload":{"kind":"offer"}}',
        encode(StateMessage(payload=StatePayload(status="online", bdseq=1))),  # wrong channel
        b'{"v":1,"pad":"' + b"x" * 70_000 + b'"}',
    ]
    async with broker.client("central-2") as operator:
        async with collecting(operator, "vaka/v1/dev/u-target/#") as seen:
            for raw in bad:
                await operator.publish("vaka/v1/dev/u-target/signal/in", raw, qos=1)
            # Still serving: a valid request gets an answer.
            request = SignalMessage(payload=SignalPayload(kind="request", call_id="c-1"))
            await operator.publish("vaka/v1/dev/u-target/signal/in", encode(request), qos=1)

            def payloads(suffix: str) -> list[dict]:
                return [json.loads(m.payload) for m in seen if m.topic.value.endswith(suffix)]

            await wait_for(
                lambda: (
                    len([e for e in payloads("/events") if e["payload"]["kind"] == "refused"]) >= 4
                ),
                5,
                what="four refusal events",
            )
            await wait_for(lambda: payloads("/signal/out"), 5, what="answer to the valid request")
            await wait_for(
                lambda: any(
                    h["payload"].get("refused_messages", 0) >= 4 for h in payloads("/health")
                ),
                5,
                what="refusal count in health",
            )
    reasons = [e["payload"]["detail"]["reason"] for e in payloads("/events")]
    assert any("not valid UTF-8 JSON" in r for r in reasons)
    assert any("signal.payload.call_id: Field required" in r for r in reasons)
    assert any("over the 65536-byte limit" in r for r in reasons)
    assert any("does not belong on the 'signal/in' channel" in r for r in reasons)
    answer = payloads("/signal/out")[0]["payload"]
    assert answer["call_id"] == "c-1" and answer["kind"] == "error"
    assert await unit_status(central, "u-target") == "online"
