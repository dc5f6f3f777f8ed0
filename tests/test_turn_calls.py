"""Per-call relay credentials through the real stack: central with ``[turn]`` and the stack's own
coturn (:meth:`vaka.devstack.stack.LocalStack.start_turn`), a unit in this process, the staff
client. The caller gets its credential on the call WebSocket before its offer (``prepare``), the
unit gets its own inside the signed ticket; both allocate on coturn (their SDPs carry relay
candidates), and a credential is refused by coturn once the ticket has expired.

Where the relay is the only path (the unit's shipped firewall in a network namespace),
``tests/test_networks.py`` shows that the selected pair is the relay.
"""

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import aioice.stun
import aioice.turn
import pytest

from tests.conftest import TOTP_SECRET, staff_token
from tests.nightcheck import PASSWORD, UNIT, load_directory, running_agent
from vaka.central.service import CentralService
from vaka.devstack.central import running_central
from vaka.devstack.stack import LocalStack
from vaka.rtc.ice import reset_ice
from vaka.staff.client import StaffClient
from vaka.staff.placing import relay_servers


@pytest.fixture
async def relayed_central(stack: LocalStack) -> AsyncIterator[CentralService]:
    """Central with the stack's coturn as its relay; tickets live 5 s (the shortest allowed)."""
    await asyncio.to_thread(stack.start_turn)
    config = stack.central_config()
    config = config.model_copy(
        update={"calls": config.calls.model_copy(update={"ticket_ttl_s": 5})}
    )
    assert config.turn is not None
    async with running_central(config) as service:
        yield service
    reset_ice()


async def _prepare(central: CentralService, message: dict[str, str]) -> dict[str, object]:
    token = await staff_token(central.url, "s-nurse", PASSWORD)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            f"{central.url}/api/calls", headers={"Authorization": f"Bearer {token}"}
        )
        await ws.send_json(message)
        reply: dict[str, object] = await ws.receive_json(timeout=10)
        await ws.close()
    return reply


async def _allocate(host: str, port: int, username: str, password: str) -> None:
    """Allocate on coturn over UDP with a credential (and release it); raises if refused."""
    transport, _protocol = await aioice.turn.create_turn_endpoint(
        asyncio.DatagramProtocol,
        server_addr=(host, port),
        username=username,
        password=password,
        lifetime=60,
        channel_refresh_time=50,
    )
    transport.close()
    await asyncio.sleep(0.1)


async def test_caller_and_unit_both_allocate_with_their_own_credentials(
    stack: LocalStack, relayed_central: CentralService
) -> None:
    central = relayed_central
    await load_directory(central)
    async with running_agent(stack.broker) as unit, StaffClient(central.url) as staff:
        await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
        call = await staff.dial(UNIT, "night_check")
        await call.next_frame(timeout=10)
        assert unit.agent.calls is not None
        session = unit.agent.calls.session
        assert session is not None
        relay = session.claims.rly
        assert relay is not None
        expiry, name = relay.username.split(":", 1)
        assert name == f"{call.call_id}-unit"
        assert int(expiry) == session.claims.exp  # the unit's credential ends with its ticket
        assert relay.urls[0].startswith("stun:127.0.0.1:")
        # The caller's credential is its own (not the unit's), for the same call.
        caller = [s for s in call.ice_servers if s.username]
        assert caller and caller[0].username == f"{expiry}:{call.call_id}-caller"
        # Both allocated on coturn with them: each side offered a relay candidate.
        assert " typ relay" in call.pc.localDescription.sdp
        assert " typ relay" in call.pc.remoteDescription.sdp
        assert await call.hangup() == "you hung up"


async def test_a_leaked_credential_expires_with_the_ticket(
    stack: LocalStack, relayed_central: CentralService
) -> None:
    central = relayed_central
    await load_directory(central)
    prepared = await _prepare(central, {"type": "prepare", "unit": UNIT, "purpose": "night_check"})
    assert prepared["type"] == "prepared", prepared
    expires_at = prepared["expires_at"]
    assert isinstance(expires_at, int) and 0 < expires_at - time.time() <= 6
    entries = prepared["ice_servers"]
    assert isinstance(entries, list)
    turn = relay_servers(entries)[1]
    assert str(turn.urls).startswith("turn:") and turn.username and turn.credential
    assert turn.username.startswith(f"{expires_at}:") and turn.username.endswith("-caller")
    assert stack.turn is not None
    host, port = stack.turn.settings.listen_ip, stack.turn.settings.port
    await _allocate(host, port, turn.username, turn.credential)  # good while the ticket is

    await asyncio.sleep(max(0.0, expires_at - time.time()) + 1.2)
    with pytest.raises(aioice.stun.TransactionFailed) as refused:
        await _allocate(host, port, turn.username, turn.credential)
    assert refused.value.response.attributes["ERROR-CODE"][0] == 401


async def test_without_a_relay_prepare_gives_no_ice_servers(
    central: CentralService,
) -> None:
    await load_directory(central)
    prepared = await _prepare(central, {"type": "prepare", "unit": UNIT, "purpose": "night_check"})
    assert prepared["type"] == "prepared"
    assert prepared["ice_servers"] == []


async def test_no_credential_for_a_call_the_caller_may_not_make(
    relayed_central: CentralService,
) -> None:
    central = relayed_central
    await load_directory(central)
    refused = await _prepare(
        central, {"type": "prepare", "unit": "u-nobody", "purpose": "night_check"}
    )
    assert refused["type"] == "refused"
    assert "ice_servers" not in refused
    kinds = [e.kind for e in await asyncio.to_thread(central.audit.entries)]
    assert kinds[-1] == "ticket_refused"


async def test_the_dial_must_repeat_what_was_prepared(relayed_central: CentralService) -> None:
    central = relayed_central
    await load_directory(central)
    token = await staff_token(central.url, "s-nurse", PASSWORD)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            f"{central.url}/api/calls", headers={"Authorization": f"Bearer {token}"}
        )
        await ws.send_json({"type": "prepare", "unit": UNIT, "purpose": "night_check"})
        prepared = await ws.receive_json(timeout=10)
        assert prepared["type"] == "prepared"
        offer_sdp = await _an_offer()
        await ws.send_json(
            {"type": "dial", "unit": UNIT, "purpose": "video_visit", "sdp": offer_sdp}
        )
        refused = await ws.receive_json(timeout=10)
        await ws.close()
    assert refused == {
        "type": "refused",
        "call_id": prepared["call_id"],
        "reason": "the dial request does not match the prepared call",
    }


async def _an_offer() -> str:
    from tests.nightcheck import make_offer

    pc, sdp, _ = await make_offer()
    await pc.close()
    return sdp
