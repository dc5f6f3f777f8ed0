"""Calls to a TV unit: it wakes the TV over CEC, rings, auto-answers by the signed rules, and
does what the citizen presses (headless screen; the real window is in test_tv_window.py)."""

import asyncio

import pytest

from tests.conftest import TOTP_SECRET
from tests.nightcheck import PASSWORD
from tests.tvunit import DAY, OUTSIDER, TV, cec_bus, push_tv_config, running_tv, screen_of, shown
from vaka.agent.app import Agent
from vaka.agent.hw.display import TvState
from vaka.agent.media.audio import AudioSink, ToneTrack
from vaka.agent.ui import ButtonId, Idle, InCall, Incoming
from vaka.central.service import CentralService
from vaka.devstack.broker import Broker
from vaka.devstack.polling import wait_for
from vaka.rtc.pattern import decode_pattern
from vaka.staff.call import PatternVideoTrack
from vaka.staff.client import StaffClient, StaffError

pytestmark = pytest.mark.timeout(90)

RULES = [{"purpose": "video_visit", "caller_groups": ["g-day"], "countdown_s": 2}]


async def _load(central: CentralService) -> None:
    from tests.tvunit import tv_directory

    await asyncio.to_thread(central.directory.load, tv_directory())


def _shown_pattern(agent: Agent) -> int | None:
    """The counter of the caller's pattern in the picture the TV screen shows now."""
    state = screen_of(agent).state
    image = state.remote_frame if isinstance(state, InCall) else None
    reading = None if image is None else decode_pattern(image)
    return None if reading is None else reading.counter


def incoming(agent: object) -> list[Incoming]:
    return [s for s in shown(agent) if isinstance(s, Incoming)]  # type: ignore[arg-type]


async def test_call_to_sleeping_tv_wakes_it_rings_and_auto_answers(
    broker: Broker, central: CentralService
) -> None:
    await _load(central)
    async with running_tv(broker) as agent:
        await push_tv_config(central, agent, auto_answer=RULES)
        bus = cec_bus(agent)
        assert bus.state is TvState.STANDBY and bus.sent == []
        async with StaffClient(central.url) as staff:
            await staff.login(DAY, PASSWORD, totp_secret=TOTP_SECRET)
            call = await staff.dial(
                TV,
                purpose="video_visit",
                send_video=PatternVideoTrack(),
                send_audio=ToneTrack(1000),
            )
            # Woken over CEC and switched to the unit's input before it rang.
            assert bus.sent[:2] == [("image-view-on",), ("active-source", "1.0.0.0")]
            assert bus.tv_input == "1.0.0.0" and bus.state is TvState.ON
            rang = incoming(agent)
            assert rang[0].caller_name == "Dana Day" and rang[0].caller_role == "day_staff"
            assert [s.countdown_s for s in rang][:2] == [2, 1]
            # Pictures both ways, each end reading the other's test pattern.
            for _ in range(30):
                frame = await call.next_frame()
                if decode_pattern(frame.to_ndarray(format="bgr24")) is not None:
                    break
            else:
                pytest.fail("the staff side never read the unit's pattern")
            await wait_for(lambda: isinstance(screen_of(agent).state, InCall), 5)
            await wait_for(lambda: _shown_pattern(agent) is not None, 10)
            # Sound both ways: the TV plays the caller's 1000 Hz, the caller hears the unit's 440.
            assert agent.tv is not None and call.audio is not None
            speaker = agent.tv.call_media.speaker
            assert isinstance(speaker, AudioSink)
            await wait_for(lambda: abs((speaker.dominant_hz or 0) - 1000) < 20, 10)
            ear = AudioSink()
            ear.start(await asyncio.wait_for(call.audio, 10))
            await wait_for(lambda: abs((ear.dominant_hz or 0) - 440) < 20, 10)
            await ear.stop()
            await call.hangup()
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 5)
        # Back to standby after the idle time, because the unit switched the TV on.
        await wait_for(lambda: ("standby",) in bus.sent, 10)
        assert bus.state is TvState.STANDBY


async def test_caller_outside_the_rules_only_rings_and_decline_refuses(
    broker: Broker, central: CentralService
) -> None:
    await _load(central)
    async with running_tv(broker) as agent:
        await push_tv_config(central, agent, auto_answer=RULES)
        async with StaffClient(central.url) as staff:
            await staff.login(OUTSIDER, PASSWORD, totp_secret=TOTP_SECRET)
            dial = asyncio.create_task(staff.dial(TV, purpose="video_visit"))
            await wait_for(lambda: bool(incoming(agent)), 10)
            await asyncio.sleep(2.5)  # longer than the g-day countdown: nothing answers
            assert all(s.countdown_s is None for s in incoming(agent))
            assert not dial.done()
            screen_of(agent).press(ButtonId.DECLINE)
            with pytest.raises(StaffError, match="declined by the citizen"):
                await dial
        await wait_for(lambda: isinstance(screen_of(agent).state, Idle), 5)
        assert not any(isinstance(s, InCall) for s in shown(agent))
        assert agent.hardware.shutter is not None
        assert [s.value for _, s in agent.hardware.shutter.history][-1] == "closed"


async def test_cancel_stops_the_countdown_and_answer_takes_the_call(
    broker: Broker, central: CentralService
) -> None:
    await _load(central)
    async with running_tv(broker) as agent:
        await push_tv_config(
            central,
            agent,
            auto_answer=[{"purpose": "video_visit", "caller_groups": ["g-day"], "countdown_s": 3}],
        )
        async with StaffClient(central.url) as staff:
            await staff.login(DAY, PASSWORD, totp_secret=TOTP_SECRET)
            dial = asyncio.create_task(staff.dial(TV, purpose="video_visit"))
            await wait_for(lambda: bool(incoming(agent)), 10)
            screen_of(agent).press(ButtonId.CANCEL_AUTO_ANSWER)
            await asyncio.sleep(4)  # past the countdown
            assert not dial.done(), "the call was answered although the citizen said wait"
            state = screen_of(agent).state
            assert isinstance(state, Incoming) and state.countdown_s is None
            screen_of(agent).press(ButtonId.ANSWER)
            call = await dial
            await call.next_frame()
            await wait_for(lambda: isinstance(screen_of(agent).state, InCall), 5)
            screen_of(agent).press(ButtonId.HANG_UP)
            await asyncio.wait_for(call.ended.wait(), 10)
            assert "citizen" in (call.end_reason or "")
