"""The TV's fake CEC bus (what ``--simulate`` and the tests use) and the idle standby timer that
puts a TV the unit switched on back to sleep; cec-ctl itself is in test_cec.py."""

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from tests.test_cec import FakeCecCtl, cec, cec_ctl, display, power_reply  # noqa: F401
from vaka.agent.hw.cec import (
    NO_ANSWER,
    StandbyTimer,
)
from vaka.agent.hw.display import Display, TvState
from vaka.agent.hw.fake_cec import FakeCecBus, FakeCecDisplay
from vaka.errors import HardwareError

# ---------------------------------------------------------------- the fake bus


async def test_fake_bus_records_wake_switch_and_standby() -> None:
    bus = FakeCecBus()
    tv = FakeCecDisplay(bus, phys_addr="1.0.0.0")
    assert tv.state is TvState.STANDBY
    await tv.wake()
    await tv.standby()
    assert bus.sent == [("image-view-on",), ("active-source", "1.0.0.0"), ("standby",)]
    times = [t for t, _ in bus.messages]
    assert times == sorted(times)
    assert bus.tv_input == "1.0.0.0"
    assert [s for _, s in tv.history] == [TvState.STANDBY, TvState.ON, TvState.STANDBY]
    assert await tv.poll() is TvState.STANDBY
    assert bus.status_queries == 1 and len(bus.sent) == 3


async def test_fake_bus_unplugged_tv_and_remote() -> None:
    bus = FakeCecBus(TvState.ON)
    tv = FakeCecDisplay(bus)
    bus.press_power()
    assert tv.state is TvState.STANDBY  # follows the remote control
    tv.unplug()
    with pytest.raises(HardwareError) as err:
        await tv.wake()
    assert str(err.value) == NO_ANSWER
    assert tv.state is TvState.ABSENT and bus.tv_input is None
    assert bus.sent == [("image-view-on",)]
    tv.plug()
    await tv.wake()
    assert tv.state is TvState.ON
    tv.release()
    bus.press_power()
    assert tv.state is TvState.ON  # a released display no longer follows


# ---------------------------------------------------------------- idle standby


async def until(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_standby_after_the_call_and_idle() -> None:
    bus = FakeCecBus()
    tv = FakeCecDisplay(bus)
    timer = StandbyTimer(tv, idle_s=0.05)
    await timer.wake()
    assert tv.state is TvState.ON
    assert timer.arm()
    await until(lambda: timer.fired > 0)
    assert bus.sent[-1] == ("standby",)
    assert timer.fired == 1 and tv.state is TvState.STANDBY


async def test_touch_keeps_the_tv_on() -> None:
    bus = FakeCecBus()
    tv = FakeCecDisplay(bus)
    timer = StandbyTimer(tv, idle_s=0.15)
    await timer.wake()
    timer.arm()
    for _ in range(10):  # 0.3 s of activity, twice the idle time
        await asyncio.sleep(0.03)
        timer.touch()
    assert timer.fired == 0 and tv.state is TvState.ON
    await until(lambda: timer.fired == 1)
    assert tv.state is TvState.STANDBY and not timer.armed


async def test_hold_cancels_and_a_watched_tv_stays_on() -> None:
    bus = FakeCecBus(TvState.ON)  # the citizen was watching TV
    tv = FakeCecDisplay(bus)
    timer = StandbyTimer(tv, idle_s=0.02)
    await timer.wake()
    assert not timer.arm()
    assert timer.arm(force=True)
    timer.hold()
    await asyncio.sleep(0.06)
    assert timer.fired == 0 and tv.state is TvState.ON and not timer.armed


class StuckTv(Display):
    async def wake(self) -> None:
        self._set_state(TvState.ON)

    async def standby(self) -> None:
        raise HardwareError("cec-ctl --standby failed (exit 1): stuck")


async def test_failed_idle_standby_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    timer = StandbyTimer(StuckTv(), idle_s=0.02)
    await timer.wake()
    timer.arm()
    with caplog.at_level(logging.WARNING, logger="vaka.agent.hw.cec"):
        await asyncio.sleep(0.06)
    assert timer.fired == 0
    assert "tv: idle standby failed: cec-ctl --standby failed (exit 1): stuck" in caplog.messages


async def test_idle_standby_skips_an_absent_tv() -> None:
    bus = FakeCecBus()
    tv = FakeCecDisplay(bus)
    timer = StandbyTimer(tv, idle_s=0.02)
    await timer.wake()
    timer.arm()
    bus.unplug()
    await asyncio.sleep(0.06)
    assert timer.fired == 0
    assert bus.sent[-1] == ("active-source", "1.0.0.0")


async def test_timer_asks_a_tv_of_unknown_state_before_waking(
    cec_ctl: FakeCecCtl,  # noqa: F811 - the fixture
) -> None:
    cec_ctl.answer("give-device-power-status", out=power_reply("on", 0))
    tv = display()
    timer = StandbyTimer(tv, idle_s=0.01)
    await timer.wake()
    assert cec_ctl.calls[1] == cec("--to", "0", "--give-device-power-status")
    assert not timer.arm()  # the citizen was watching: leave the TV on
