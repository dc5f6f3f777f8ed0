"""Replay and restart: a ticket is good for one agent run; a call that never reaches media frees
the unit within the setup deadline and is never reported as started."""

import asyncio
import base64
import json
import time

import aiohttp
import pytest

from tests.conftest import TOTP_SECRET, AgentFactory, collecting, staff_token
from tests.nightcheck import (
    PASSWORD,
    UNIT,
    agent_config,
    audit_kinds,
    load_directory,
    make_offer,
)
from vaka.central.audit.reports import supervisions
from vaka.central.service import CentralService
from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.devstack.units import running_agent
from vaka.staff.client import StaffClient

SETUP_S = 3.0


@pytest.mark.usefixtures("loopback_ice")
async def test_a_ticket_replayed_after_an_agent_restart_is_refused(
    stack: LocalStack, central: CentralService, start_agent: AgentFactory
) -> None:
    await load_directory(central)
    start_agent(UNIT)
    assert await stack.wait_online(central, [UNIT])
    async with stack.broker.client("central-2") as spy:
        async with collecting(spy, f"vaka/v1/dev/{UNIT}/signal/in") as seen:
            async with StaffClient(central.url) as staff:
                await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
                call = await staff.dial(UNIT, "night_check")
                await call.next_frame()
                assert await call.hangup() == "you hung up"
            await wait_for(lambda: seen, 5, what="the offer seen on signal/in")
    captured = next(m.payload for m in seen if b'"offer"' in bytes(m.payload))
    call_id = json.loads(captured)["payload"]["call_id"]
    await wait_for(lambda: _once(central, call_id, "call_ended"), 10, what="call ended")

    # A ticket's iat is whole seconds, and the unit accepts one of the second it started in. A
    # real unit takes seconds to restart; this machine can do it within that second.
    issued = json.loads(captured)["payload"]["ticket"]
    iat = json.loads(base64.urlsafe_b64decode(issued.split(".")[1] + "=="))["iat"]
    await asyncio.sleep(max(0.0, iat + 1 - time.time()))
    start_agent(UNIT)  # the same unit again: the agent restarted, its nonces are gone
    async with stack.broker.client("central-2") as rogue:
        async with collecting(rogue, f"vaka/v1/dev/{UNIT}/signal/out") as replies:
            deadline = time.monotonic() + 30
            while not replies and time.monotonic() < deadline:
                await rogue.publish(f"vaka/v1/dev/{UNIT}/signal/in", captured, qos=1)
                await asyncio.sleep(1.0)  # the restarted agent may not be subscribed yet
            await wait_for(lambda: replies, 5, what="the restarted unit's reply")
    reply = json.loads(replies[0].payload)["payload"]
    print(f"replayed ticket after restart: {reply['kind']}: {reply.get('reason')}")
    assert reply["kind"] == "error", stack.units[UNIT].tail(4000)
    assert reply["call_id"] == call_id
    assert "before this unit's agent started" in reply["reason"]
    # Its one start, and no second.
    await asyncio.sleep(1.0)
    assert await _count(central, call_id, "call_started") == 1


async def test_a_call_that_never_reaches_media_frees_the_unit_within_the_deadline(
    stack: LocalStack, central: CentralService
) -> None:
    """A ticketed offer whose peer never completes ICE/DTLS (as with a replayed ticket): the unit
    answers, waits the setup deadline, and is free again — no ``call started``, shutter never
    opened, a ``call ended`` with its reason."""
    await load_directory(central)
    config = agent_config(stack.broker)
    config["calls"] = {**config["calls"], "setup_timeout_s": SETUP_S}
    async with running_agent(config) as agent:
        token = await staff_token(central.url, "s-nurse", PASSWORD)
        pc, sdp, _ = await make_offer()
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(
                central.url + "/api/calls", headers={"Authorization": f"Bearer {token}"}
            ) as ws:
                await ws.send_json(
                    {"type": "dial", "unit": UNIT, "purpose": "night_check", "sdp": sdp}
                )
                answer = await ws.receive_json(timeout=15)
                answered = time.monotonic()
                assert answer["type"] == "answer"
                await pc.close()  # the peer is gone before it ever answers ICE
                calls = agent.calls
                assert calls is not None
                await wait_for(lambda: calls.session is None, SETUP_S + 10, what="unit free")
                took = time.monotonic() - answered
                print(f"unit free {took:.2f} s after answering a peer that never connected")
                assert took <= SETUP_S + 2
                assert calls.state.phase.value == "idle"
                assert f"no media within {SETUP_S:g} s" in (calls.last_result or "")
                ended = await ws.receive_json(timeout=10)
                assert ended["type"] == "ended"
                assert f"no media within {SETUP_S:g} s" in ended["reason"]
        shutter = agent.hardware.shutter
        assert shutter is not None
        assert [s.value for _, s in shutter.history] == ["closed"]  # it never opened
        call_id = answer["call_id"]
        await wait_for(lambda: _once(central, call_id, "call_ended"), 10, what="audited")
        kinds = await audit_kinds(central, call_id)
        assert "call_started" not in kinds
        assert "shutter_open" not in kinds
        entry = next(
            e for e in await asyncio.to_thread(central.audit.entries) if e.kind == "call_ended"
        )
        assert entry.detail.get("media") is False
        done = await asyncio.to_thread(supervisions, central.audit, 0, time.time() + 60)
        assert call_id not in {s.call_id for s in done}  # no supervision was performed


async def _count(central: CentralService, call_id: str, kind: str) -> int:
    return (await audit_kinds(central, call_id)).count(kind)


async def _once(central: CentralService, call_id: str, kind: str) -> bool:
    return await _count(central, call_id, kind) == 1
