"""Every refusal has its own reason in the audit trail, and the shutter never moves."""

import asyncio
import json
import time

import pytest
from aiortc import RTCPeerConnection

from tests.conftest import TOTP_SECRET, collecting
from tests.nightcheck import (
    OTHER_UNIT,
    PASSWORD,
    UNIT,
    RunningAgent,
    load_directory,
    make_offer,
    running_agent,
)
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.protocol import SignalMessage, SignalPayload, encode
from vaka.protocol.sdp import preferred_fingerprint
from vaka.provisioning.tickets import TicketClaims, load_ticket_key, new_ticket_key, sign_ticket
from vaka.rtc.ice import rtc_configuration
from vaka.staff.client import StaffClient, StaffError


async def refusal_reasons(central: CentralService, kind: str) -> list[str]:
    entries = await asyncio.to_thread(central.audit.entries)
    return [e.detail.get("reason", "") for e in entries if e.kind == kind]


@pytest.mark.parametrize(
    ("staff_id", "unit", "purpose", "reason", "expected"),
    [
        (
            "s-stranger",
            UNIT,
            "night_check",
            None,
            "staff s-stranger is not in a group allowed night_check calls to citizen c-1001",
        ),
        (
            "s-nurse",
            OTHER_UNIT,
            "night_check",
            None,
            "outside the night-check schedule for citizen c-2002",
        ),
        (
            "s-nurse",
            UNIT,
            "break_glass",
            "hm",
            "an emergency (break-glass) call needs a typed reason",
        ),
        (
            "s-nurse",
            "u-unassigned",
            "night_check",
            None,
            "unit u-unassigned is not assigned to a citizen",
        ),
    ],
)
async def test_central_refuses_a_ticket_with_a_reason(
    broker: Broker,
    central: CentralService,
    staff_id: str,
    unit: str,
    purpose: str,
    reason: str | None,
    expected: str,
) -> None:
    await load_directory(central)
    async with running_agent(broker) as agent:
        async with StaffClient(central.url) as staff:
            await staff.login(staff_id, PASSWORD, totp_secret=TOTP_SECRET)
            with pytest.raises(StaffError, match="call refused") as err:
                await staff.dial(unit, purpose, reason)
        assert expected in str(err.value)
        assert any(expected in r for r in await refusal_reasons(central, "ticket_refused"))
        assert agent.shutter_states == ["closed"]


def claims(fp: str, **changes: object) -> TicketClaims:
    now = int(time.time())
    base: dict[str, object] = {
        "aud": UNIT,
        "sub": "s-nurse",
        "name": "Nina Night",
        "role": "night_staff",
        "grp": "g-night",
        "purpose": "night_check",
        "cid": "forged-1",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "win": (now - 60, now + 600),
        "maxd": 60,
        "fp": fp,
    }
    base.update(changes)
    return TicketClaims.model_validate(base)


async def offer_directly(
    broker: Broker, agent: RunningAgent, ticket: str | None, sdp: str, call_id: str = "forged-1"
) -> dict:
    """Publish an offer as a compromised central would, and return the unit's reply."""
    async with broker.client("central-2") as rogue:
        async with collecting(rogue, f"vaka/v1/dev/{UNIT}/signal/out") as replies:
            offer = SignalPayload(kind="offer", call_id=call_id, ticket=ticket, sdp=sdp)
            await rogue.publish(
                f"vaka/v1/dev/{UNIT}/signal/in", encode(SignalMessage(payload=offer)), qos=1
            )
            await wait_for(lambda: replies, 5, what="the unit's reply")
    return json.loads(replies[0].payload)["payload"]


CASES = [
    "no ticket",
    "bad signature",
    "expired",
    "other unit",
    "fingerprint",
    "oversize sdp",
    "replayed nonce",
    "outside window",
    "wrong purpose",
    "contact ticket",
    "no data channel",
]


@pytest.mark.parametrize("case", CASES)
async def test_unit_refuses_a_bad_offer_with_its_own_reason(
    broker: Broker, central: CentralService, case: str
) -> None:
    key = load_ticket_key(broker.pki.ticket_keys()[0])
    pc, sdp, fp = await make_offer()
    now = int(time.time())
    ticket: str | None = sign_ticket(claims(fp), key)
    expected = {
        "no ticket": "no ticket",
        "bad signature": "bad signature",
        "expired": "ticket expired",
        "other unit": f"ticket is for unit {OTHER_UNIT}, not this unit ({UNIT})",
        "fingerprint": "DTLS fingerprint in the offer does not match the ticket",
        "oversize sdp": "bad offer: SDP is",
        "replayed nonce": "ticket already used (replayed nonce)",
        "outside window": "outside the ticket's schedule window",
        "wrong purpose": "video_visit calls are not allowed on a nightcam unit",
        # a contact of the citizen, signed by central itself: still no night camera
        "contact ticket": "contact_call calls are not allowed on a nightcam unit",
        "no data channel": "bad offer: no data channel for the viewer's heartbeat",
    }[case]
    if case == "no ticket":
        ticket = None
    elif case == "bad signature":
        ticket = sign_ticket(claims(fp), new_ticket_key())
    elif case == "expired":
        ticket = sign_ticket(claims(fp, iat=now - 600, nbf=now - 600, exp=now - 300), key)
    elif case == "other unit":
        ticket = sign_ticket(claims(fp, aud=OTHER_UNIT), key)
    elif case == "fingerprint":
        ticket = sign_ticket(claims("sha-256 " + ":".join(["AB"] * 32)), key)
    elif case == "oversize sdp":
        sdp = sdp + "a=x-padding:" + "x" * 20_000 + "\r\n"
    elif case == "outside window":
        ticket = sign_ticket(claims(fp, win=(now + 3600, now + 7200)), key)
    elif case == "wrong purpose":
        ticket = sign_ticket(claims(fp, purpose="video_visit"), key)
    elif case == "contact ticket":
        contact = {"sub": "k-ANNA234567", "name": "Anna", "role": "contact", "grp": None}
        ticket = sign_ticket(claims(fp, purpose="contact_call", **contact), key)
    elif case == "no data channel":  # a peer that could not prove its presence
        await pc.close()
        pc = RTCPeerConnection(rtc_configuration())
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        ticket = sign_ticket(claims(preferred_fingerprint(sdp)), key)
    async with running_agent(broker) as agent:
        if case == "replayed nonce":
            first = await offer_directly(broker, agent, ticket, sdp)
            assert first["kind"] == "answer"
            await agent.agent.calls.session.end("test over")  # type: ignore[union-attr]
            moved = list(agent.shutter_states)
        reply = await offer_directly(broker, agent, ticket, sdp)
        assert reply["kind"] == "error"
        assert expected in reply["reason"]
        if case == "replayed nonce":
            assert agent.shutter_states == moved  # nothing moved for the replay
        else:
            assert agent.shutter_states == ["closed"]

        async def audited() -> bool:
            return any(expected in r for r in await refusal_reasons(central, "call_refused"))

        await wait_for(audited, 5, what=f"'{expected}' in the audit trail")
    await pc.close()


async def test_a_valid_ticket_without_the_callers_dtls_key_never_opens_the_shutter(
    broker: Broker, central: CentralService
) -> None:
    """A captured ticket and offer replayed by someone else (say, after the unit restarted and
    forgot the nonce) gets an answer, but the shutter opens only once DTLS proves the peer holds
    the key the ticket names — which the replayer does not."""
    key = load_ticket_key(broker.pki.ticket_keys()[0])
    pc, sdp, fp = await make_offer()
    async with running_agent(broker) as agent:
        # Signed once the unit runs: a slow start must not let the ticket's window close.
        ticket = sign_ticket(claims(fp), key)
        reply = await offer_directly(broker, agent, ticket, sdp)
        assert reply["kind"] == "answer", reply  # the offer itself was in order
        await asyncio.sleep(3)  # the replayer cannot complete ICE/DTLS with the answer
        assert agent.shutter_states == ["closed"]
        led = agent.agent.hardware.led
        assert led is not None and not led.is_on
    await pc.close()
