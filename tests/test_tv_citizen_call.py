"""The night-staff button on a TV unit, end to end: the citizen's press rings every night-staff
member on duty for the unit's group; the first to accept gets a two-way call (video and sound
checked at both ends), the other stops ringing; with nobody on duty the citizen is told and
central escalates."""

import asyncio
import time

import pytest

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD
from tests.tvunit import NIGHT, NIGHT_TWO, TV, push_tv_config, running_tv, screen_of, tv_directory
from vaka.agent.app import Agent
from vaka.agent.media.audio import AudioSink, ToneTrack
from vaka.agent.ui import ButtonId, Calling, Idle, InCall, Trouble
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.rtc.pattern import decode_pattern
from vaka.staff.client import StaffClient

pytestmark = pytest.mark.timeout(90)


async def _staff(central: CentralService, staff_id: str) -> StaffClient:
    client = StaffClient(central.url)
    await client.__aenter__()
    await client.login(staff_id, PASSWORD, totp_secret=TOTP_SECRET)
    return client


def _remote_pattern(agent: Agent) -> int | None:
    """The counter of the staff pattern the TV shows now, if it reads."""
    assert agent.tv is not None
    remote = agent.tv.call_media.remote
    image = None if remote is None else remote.latest
    reading = None if image is None else decode_pattern(image)
    return None if reading is None else reading.counter


async def test_button_rings_both_on_duty_first_accept_wins_two_way(
    broker: Broker, central: CentralService
) -> None:
    await asyncio.to_thread(central.directory.load, tv_directory())
    nils, nora = await _staff(central, NIGHT), await _staff(central, NIGHT_TWO)
    try:
        async with running_tv(broker) as agent:
            await push_tv_config(central, agent)
            await nils.duty(True)
            await nora.duty(True)
            async with nils.ring_socket() as nils_rings, nora.ring_socket() as nora_rings:
                screen_of(agent).press(ButtonId.CALL_STAFF)
                await wait_for(lambda: isinstance(screen_of(agent).state, Calling), 5)
                ring = await nils_rings.next_ring(10)
                assert (await nora_rings.next_ring(10))["request_id"] == ring["request_id"]
                assert ring["unit"] == TV

                accepted_at = time.monotonic()
                call = await nils.answer(ring["request_id"], TV, send_audio=ToneTrack(1000))
                stop = await nora_rings.next(5)
                stopped_after = time.monotonic() - accepted_at
                assert stop["type"] == "stop_ringing" and "Nils Night" in stop["reason"]
                print(
                    f"the other night nurse stopped ringing {stopped_after * 1000:.0f} ms "
                    "after the accept was sent"
                )
                assert stopped_after < 1.0

                # Video both ways, each end reading the other's pattern.
                for _ in range(30):
                    frame = await call.next_frame(10)
                    if decode_pattern(frame.to_ndarray(format="bgr24")) is not None:
                        break
                else:
                    pytest.fail("the staff side never read the unit's pattern")
                await wait_for(lambda: isinstance(screen_of(agent).state, InCall), 5)
                await wait_for(lambda: _remote_pattern(agent) is not None, 10)
                first = _remote_pattern(agent)
                await wait_for(lambda: (_remote_pattern(agent) or 0) > (first or 0), 5)

                # Sound both ways: the unit hears the staff's 1000 Hz, the staff the unit's 440.
                assert agent.tv is not None
                speaker = agent.tv.call_media.speaker
                assert isinstance(speaker, AudioSink)
                await wait_for(lambda: speaker.frames > 10, 10)
                await wait_for(lambda: abs((speaker.dominant_hz or 0) - 1000) < 20, 10)
                assert call.audio is not None
                staff_ear = AudioSink()
                staff_ear.start(await asyncio.wait_for(call.audio, 10))
                await wait_for(lambda: abs((staff_ear.dominant_hz or 0) - 440) < 20, 10)
                await staff_ear.stop()

                await call.hangup()
                await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 10)
    finally:
        await nils.__aexit__(None, None, None)
        await nora.__aexit__(None, None, None)


async def test_nobody_on_duty_tells_the_citizen_and_escalates(
    broker: Broker, central: CentralService
) -> None:
    await asyncio.to_thread(central.directory.load, tv_directory())
    nils = await _staff(central, NIGHT)
    try:
        async with running_tv(broker) as agent:
            await push_tv_config(central, agent)
            screen_of(agent).press(ButtonId.CALL_STAFF)
            await wait_for(lambda: isinstance(screen_of(agent).state, Trouble), 10)
            state = screen_of(agent).state
            assert isinstance(state, Trouble) and state.reason_key == "no_staff"
            escalations = await nils.escalations()
            assert escalations and escalations[0]["unit"] == TV
            assert "nobody" in escalations[0]["reason"]
    finally:
        await nils.__aexit__(None, None, None)
