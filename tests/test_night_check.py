"""Night check end to end: staff client -> central -> broker -> unit, real aiortc peers on
127.0.0.1, the real shutter state machine on gpiozero's mock pins, the audit trail."""

import asyncio
import time

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD, UNIT, audit_kinds, load_directory, running_agent
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.protocol.sdp import preferred_fingerprint
from vaka.rtc.pattern import PatternReading, decode_pattern
from vaka.staff.client import StaffClient

#: Largest per-channel difference between a received bar and the drawn one that we accept after
#: VP8 at 320x240 (chroma subsampling and quantisation blur bar edges; centres stay close).
BAR_TOLERANCE = 40


async def test_authorised_night_check_streams_the_pattern_and_is_audited(
    broker: Broker, central: CentralService
) -> None:
    await load_directory(central)
    # A dark scene (the threshold says every frame is dark): the IR light must come on.
    async with running_agent(broker, dark_below=255) as unit:
        assert unit.shutter_states == ["closed"]
        hw = unit.agent.hardware
        assert hw.led is not None and hw.ir_light is not None
        assert not hw.led.is_on and not hw.ir_light.is_on
        async with StaffClient(central.url) as staff:
            await staff.login("s-nurse", PASSWORD, totp_secret=TOTP_SECRET)
            call = await staff.dial(UNIT, "night_check")
            readings: list[PatternReading] = []
            while len(readings) < 10:
                frame = await call.next_frame(timeout=10)
                reading = decode_pattern(frame.to_ndarray(format="bgr24"))
                if reading is not None:
                    readings.append(reading)
            received_at = time.time()
            await wait_for(lambda: unit.shutter_states[-1] == "open", 5, what="the shutter open")
            assert hw.led.is_on  # the camera runs: the indicator is on
            await wait_for(
                lambda: hw.ir_light.is_on, 3, what="IR light on while streaming in the dark"
            )
            session = unit.agent.calls.session
            assert session is not None
            # The staff client's offer fingerprint is the one the ticket named and the unit saw.
            assert session.claims.fp == preferred_fingerprint(call.pc.localDescription.sdp)
            assert "a=fingerprint:sha-256" in call.pc.remoteDescription.sdp
            reason = await call.hangup()
        assert reason == "you hung up"
        await wait_for(lambda: unit.shutter_states[-1] == "closed", 5, what="shutter closed")
        await wait_for(lambda: not hw.led.is_on and not hw.ir_light.is_on, 3, what="lights off")
        # The indicator was on exactly while the camera could see: after the shutter opened,
        # and off again before it reported closed... at the latest right after.
        led_on = [t for t, s in hw.led.history if s.value == "on"]
        opened = [t for t, s in unit.agent.hardware.shutter.history if s.value == "open"]
        assert len(led_on) == 1 and led_on[0] >= opened[0]

    counters = [r.counter for r in readings]
    assert counters == sorted(counters) and len(set(counters)) == len(counters)
    for reading in readings:
        assert reading.night
        assert reading.max_error <= BAR_TOLERANCE, reading
        assert 0 < received_at - reading.timestamp_ms / 1000 < 5
    # Open only inside the session, closed again after.
    assert unit.shutter_states[0] == "closed" and unit.shutter_states[-1] == "closed"
    assert unit.shutter_states.count("open") == 1
    await wait_for(lambda: _has(central, "call_ended"), 5, what="call_ended in the audit")
    kinds = await audit_kinds(central, call.call_id)
    for expected in (
        "ticket_issued",
        "call_started",
        "shutter_open",
        "shutter_closed",
        "call_ended",
    ):
        assert expected in kinds, kinds
    ended = [e for e in await asyncio.to_thread(central.audit.entries) if e.kind == "call_ended"]
    assert ended[0].actor == "s-nurse" and ended[0].purpose == "night_check"
    assert ended[0].detail["duration_s"] > 0
    assert (await asyncio.to_thread(central.audit.verify)).ok


async def _has(central: CentralService, kind: str) -> bool:
    return kind in await audit_kinds(central)
