"""The citizen's one button, central's side: real Mosquitto, real central, staff clients on ring
sockets, and the TV unit played by an MQTT client holding the unit's certificate (what it sends
is fixed by the contract in :mod:`vaka.central.calls.citizen`)."""

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from tests.citizendesk import (
    PASSWORD,
    UNIT,
    FakeTvUnit,
    audit_of,
    desk_central,
    fake_unit,
    on_duty,
)
from vaka.central.calls.citizen import NO_STAFF
from vaka.central.calls.requests import CallRequest
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.provisioning.tickets import load_ticket_key, verify_ticket
from vaka.rtc.ice import rtc_configuration
from vaka.rtc.pattern import decode_pattern
from vaka.staff.call import PatternVideoTrack
from vaka.staff.client import StaffClient, StaffError


async def answer_offer(unit: FakeTvUnit, offer: dict[str, Any]) -> tuple[RTCPeerConnection, Any]:
    """Answer a staff offer as a TV unit would: send a pattern, receive the staff's video."""
    pc = RTCPeerConnection(rtc_configuration())
    incoming: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def _on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video" and not incoming.done():
            incoming.set_result(track)

    await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    pc.addTrack(PatternVideoTrack())
    await pc.setLocalDescription(await pc.createAnswer())
    await unit.send(kind="answer", call_id=offer["call_id"], sdp=pc.localDescription.sdp)
    return pc, incoming


async def test_two_on_duty_both_ring_first_accept_wins_and_the_call_is_two_way(
    broker: Broker, tmp_path: Path, loopback_ice: None, db_url: str
) -> None:
    async with (
        desk_central(broker, tmp_path, database=db_url) as desk,
        on_duty(desk.central, "s-nina") as nina,
        on_duty(desk.central, "s-nils") as nils,
        nina.ring_socket() as nina_rings,
        nils.ring_socket() as nils_rings,
        fake_unit(broker) as unit,
    ):
        central = desk.central
        req = await unit.press()
        ring_nina, ring_nils = await nina_rings.next_ring(5), await nils_rings.next_ring(5)
        for ring in (ring_nina, ring_nils):
            assert ring["request_id"] == req
            assert (ring["unit"], ring["citizen"], ring["group"]) == (UNIT, "c-tv", "g-night")
        ringing = await unit.signal(lambda s: s["kind"] == "state" and s["call_id"] == req)
        assert ringing["state"] == "ringing" and ringing["reason"] == "ringing 2 night staff"

        started = time.monotonic()
        accepting = asyncio.create_task(nina.answer(req, UNIT))
        stop = await nils_rings.next(5)
        delay = time.monotonic() - started
        print(f"stop_ringing reached the other staff member {delay * 1000:.0f} ms after accept")
        assert stop == {
            "type": "stop_ringing",
            "request_id": req,
            "reason": "answered by Nina Night",
            "reason_code": "already_answered",
            "params": {"name": "Nina Night"},
        }

        # The offer reaches the unit with a ticket for this request, signed by central.
        offer = await unit.signal(lambda s: s["kind"] == "offer")
        claims = verify_ticket(offer["ticket"], load_ticket_key(broker.pki.ticket_keys()[1]), UNIT)
        assert (claims.purpose, claims.req, claims.sub) == ("citizen_call", req, "s-nina")
        assert claims.win[1] - claims.win[0] == central.config.calls.citizen_call_max_s

        with pytest.raises(StaffError, match="already answered by Nina Night"):
            await nils.answer(req, UNIT)

        # Two-way: the unit sees the staff member's pattern, the staff member the unit's.
        unit_pc, incoming = await answer_offer(unit, offer)
        call = await asyncio.wait_for(accepting, 10)
        try:
            track = await asyncio.wait_for(incoming, 10)
            staff_sees = unit_sees = 0
            for _ in range(60):
                if staff_sees >= 3 and unit_sees >= 3:
                    break
                if decode_pattern((await call.next_frame(10)).to_ndarray(format="bgr24")):
                    staff_sees += 1
                frame = await asyncio.wait_for(track.recv(), 10)
                if decode_pattern(frame.to_ndarray(format="bgr24")):
                    unit_sees += 1
            assert staff_sees >= 3 and unit_sees >= 3, (staff_sees, unit_sees)
        finally:
            await call.close()
            await unit_pc.close()

        audit = await audit_of(central, req)
        for kind in ("citizen_call_requested", "citizen_call_rang", "citizen_call_accepted"):
            assert kind in audit, audit.keys()
        assert sorted(audit["citizen_call_rang"][0].detail["staff"]) == ["s-nils", "s-nina"]
        assert audit["citizen_call_accepted"][0].actor == "s-nina"
        assert "citizen_call_escalated" not in audit
        issued = await asyncio.to_thread(central.audit.entries, kind="ticket_issued")
        assert [e.detail.get("request") for e in issued] == [req]
        refused = await asyncio.to_thread(central.audit.entries, kind="ticket_refused")
        assert [(e.actor, e.detail["reason"]) for e in refused] == [
            ("s-nils", "already answered by Nina Night")
        ]
        assert (await asyncio.to_thread(central.audit.verify)).ok
        assert desk.notified.calls == []


async def test_nobody_on_duty_tells_the_unit_and_escalates(broker: Broker, tmp_path: Path) -> None:
    async with desk_central(broker, tmp_path) as desk, fake_unit(broker) as unit:
        req = await unit.press()
        error = await unit.signal(lambda s: s["call_id"] == req)
        assert (error["kind"], error["state"], error["reason"]) == ("error", "no_staff", NO_STAFF)
        await wait_for(lambda: desk.notified.calls, 5, what="the notify hook")
        kind, detail = desk.notified.calls[0]
        assert kind == "citizen_call_escalated"
        assert (detail["unit"], detail["citizen"], detail["group"]) == (UNIT, "c-tv", "g-night")
        assert detail["reason"] == NO_STAFF
        async with StaffClient(desk.central.url) as nina:
            await nina.login("s-nina", PASSWORD)
            escalations = await nina.escalations()
        assert [(e["unit"], e["request_id"], e["reason"]) for e in escalations] == [
            (UNIT, req, NO_STAFF)
        ]
        async with StaffClient(desk.central.url) as stranger:
            await stranger.login("s-stranger", PASSWORD)
            assert await stranger.escalations() == []  # not their group's citizen
        audit = await audit_of(desk.central, req)
        assert audit["citizen_call_escalated"][0].detail["reason"] == NO_STAFF


async def test_on_duty_but_not_connected_also_escalates(broker: Broker, tmp_path: Path) -> None:
    async with (
        desk_central(broker, tmp_path) as desk,
        on_duty(desk.central, "s-nina"),
        fake_unit(broker) as unit,
    ):
        req = await unit.press()
        error = await unit.signal(lambda s: s["call_id"] == req)
        assert (error["kind"], error["state"]) == ("error", "no_staff")
        await wait_for(lambda: desk.notified.calls, 5, what="the notify hook")
        assert desk.notified.calls[0][1]["reason"] == (
            "nobody from the night staff on duty is connected"
        )


async def test_nobody_accepts_in_time_stops_ringing_and_escalates(
    broker: Broker, tmp_path: Path
) -> None:
    async with (
        desk_central(broker, tmp_path, ring_s=5) as desk,
        on_duty(desk.central, "s-nina") as nina,
        nina.ring_socket() as rings,
        fake_unit(broker) as unit,
    ):
        req = await unit.press()
        assert (await rings.next_ring(5))["request_id"] == req
        stop = await rings.next(15)
        assert stop == {
            "type": "stop_ringing",
            "request_id": req,
            "reason": "unanswered",
            "reason_code": "request_unanswered",
            "params": {},
        }
        error = await unit.signal(lambda s: s["kind"] == "error" and s["call_id"] == req)
        assert error["state"] == "unanswered"
        assert "nobody from the night staff answered within 5 s" in error["reason"]
        await wait_for(lambda: desk.notified.calls, 5, what="the notify hook")
        assert desk.notified.calls[0][1]["request_id"] == req
        assert [e["request_id"] for e in await nina.escalations()] == [req]
        with pytest.raises(StaffError, match="not answered in time"):
            await nina.answer(req, UNIT)


async def test_the_unit_cancels_while_ringing(broker: Broker, tmp_path: Path) -> None:
    async with (
        desk_central(broker, tmp_path) as desk,
        on_duty(desk.central, "s-nina") as nina,
        nina.ring_socket() as rings,
        fake_unit(broker) as unit,
    ):
        req = await unit.press()
        await rings.next_ring(5)
        await unit.send(kind="hangup", call_id=req, reason="the citizen pressed cancel")
        stop = await rings.next(5)
        assert stop == {
            "type": "stop_ringing",
            "request_id": req,
            "reason": "cancelled by the citizen",
            "reason_code": "ring_cancelled",
            "params": {},
        }
        audit = await audit_of(desk.central, req)
        assert audit["citizen_call_cancelled"][0].detail["reason"] == "the citizen pressed cancel"
        with pytest.raises(StaffError, match="the citizen cancelled the call"):
            await nina.answer(req, UNIT)
        assert desk.notified.calls == []


async def test_only_the_watch_of_a_permitted_group_may_accept(
    broker: Broker, tmp_path: Path
) -> None:
    async with (
        desk_central(broker, tmp_path) as desk,
        on_duty(desk.central, "s-nina") as nina,
        on_duty(desk.central, "s-stranger") as stranger,
        StaffClient(desk.central.url) as nils,
        nina.ring_socket() as rings,
        fake_unit(broker) as unit,
    ):
        await nils.login("s-nils", PASSWORD)  # in the group, but not on duty
        req = await unit.press()
        await rings.next_ring(5)
        with pytest.raises(StaffError, match="not in a group that takes citizen calls"):
            await stranger.answer(req, UNIT)
        with pytest.raises(StaffError, match="staff s-nils is not on duty"):
            await nils.answer(req, UNIT)
        with pytest.raises(StaffError, match="a citizen call answers a citizen's request"):
            await nina.dial(UNIT, "citizen_call")
        with pytest.raises(StaffError, match="came from unit u-tv, not u-other"):
            await nina.answer(req, "u-other")
        # Nobody took it: Nina's ring goes on.
        with pytest.raises(TimeoutError):
            await rings.next(0.5)
        reasons = [
            (e.actor, e.detail["reason"])
            for e in await asyncio.to_thread(desk.central.audit.entries, kind="ticket_refused")
        ]
        assert ("s-nils", "staff s-nils is not on duty") in reasons
        assert any(a == "s-stranger" and "not in a group" in r for a, r in reasons)


async def test_a_forged_request_id_is_refused(broker: Broker, tmp_path: Path) -> None:
    async with desk_central(broker, tmp_path) as desk, fake_unit(broker) as unit:
        await unit.send(kind="request", call_id="u-other.0123456789ab", state="citizen_call")
        error = await unit.signal(lambda s: s["kind"] == "error")
        assert error["state"] == "refused" and "u-tv.<12 hex digits>" in error["reason"]
        requested = await asyncio.to_thread(
            desk.central.audit.entries, kind="citizen_call_requested"
        )
        assert requested == []


async def test_a_request_left_ringing_by_a_gone_instance_is_settled_and_escalated(
    broker: Broker, tmp_path: Path, db_url: str
) -> None:
    desk_at = desk_central(broker, tmp_path, ring_s=5, database=db_url)
    async with desk_at as desk, fake_unit(broker) as unit:
        central = desk.central
        req = f"{UNIT}.{secrets.token_hex(6)}"
        # Another instance took the request and died while it rang: nobody watches the row.
        request = CallRequest(
            req, UNIT, "c-tv", frozenset({"g-night"}), time.time() - 60, "ringing", None, None, None
        )
        assert await asyncio.to_thread(central.citizen_calls.book.create, request, "central-9")
        assert await central.citizen_calls.sweep() == 1
        assert await central.citizen_calls.sweep() == 0  # settled once
        error = await unit.signal(lambda s: s["kind"] == "error" and s["call_id"] == req)
        assert error["state"] == "unanswered"
        (kind, detail) = desk.notified.calls[-1]
        assert kind == "citizen_call_escalated" and detail["request_id"] == req
