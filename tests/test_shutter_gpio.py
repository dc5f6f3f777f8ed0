"""The gpiozero shutter on gpiozero's mock pins, moved by the fake mechanism; the pin map."""

import asyncio
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from vaka.agent.hw.base import DeviceReleased, HardwareError
from vaka.agent.hw.fake_mechanism import FakeMechanism, MechanismPosition
from vaka.agent.hw.pins import PinMap, load_pin_map
from vaka.agent.hw.shutter import ShutterFault, ShutterState
from vaka.agent.hw.shutter_gpio import GpioShutter
from vaka.errors import ConfigError

SERVO, CLOSED_SWITCH, OPEN_SWITCH = 18, 23, 24
TRAVEL_S, TIMEOUT_S = 0.02, 0.15


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    """gpiozero's mock pins (with PWM, for the servo) as the default factory, restored after."""
    saved = Device.pin_factory
    mock = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = mock
    try:
        yield mock
    finally:
        Device.pin_factory = saved
        mock.close()


@dataclass
class Rig:
    factory: MockFactory
    mechanism: FakeMechanism
    shutter: GpioShutter

    def pressed(self, pin: int) -> bool:
        """Whether the limit switch on ``pin`` is pressed (wired to ground: low)."""
        return not self.factory.pin(pin).state

    def states(self) -> list[str]:
        return [state.value for _, state in self.shutter.history]


@pytest.fixture
def rig(factory: MockFactory) -> Iterator[Rig]:
    """A shutter with both switches on the default (mock) factory, and its mechanism."""
    mechanism = FakeMechanism(
        factory,
        servo_pin=SERVO,
        closed_switch_pin=CLOSED_SWITCH,
        open_switch_pin=OPEN_SWITCH,
        travel_s=TRAVEL_S,
        poll_s=0.002,
    )
    try:
        shutter = GpioShutter(
            SERVO,
            closed_switch_pin=CLOSED_SWITCH,
            open_switch_pin=OPEN_SWITCH,
            timeout_s=TIMEOUT_S,
        )
        try:
            yield Rig(factory, mechanism, shutter)
        finally:
            shutter.release()
    finally:
        mechanism.close()


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait for ``predicate()`` to hold, polling every millisecond."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


# ---------------------------------------------------------------- movements


def test_starts_closed_with_the_servo_let_go(rig: Rig) -> None:
    assert rig.shutter.state is ShutterState.CLOSED and rig.states() == ["closed"]
    assert rig.pressed(CLOSED_SWITCH) and not rig.pressed(OPEN_SWITCH)
    assert rig.factory.pin(SERVO).frequency is None  # the spring holds it closed
    assert rig.shutter.fault_reason is None


async def test_open_is_confirmed_by_the_open_switch(rig: Rig) -> None:
    await rig.shutter.open()
    assert rig.shutter.is_open
    assert rig.pressed(OPEN_SWITCH) and not rig.pressed(CLOSED_SWITCH)
    assert rig.mechanism.position is MechanismPosition.OPEN
    servo = rig.factory.pin(SERVO)
    assert servo.state / servo.frequency == pytest.approx(0.002)  # the open pulse width


async def test_history_has_every_movement_in_order_with_rising_times(rig: Rig) -> None:
    await rig.shutter.open()
    await rig.shutter.close()
    assert rig.states() == ["closed", "opening", "open", "closing", "closed"]
    times = [t for t, _ in rig.shutter.history]
    assert all(a < b for a, b in itertools.pairwise(times))
    assert times[2] - times[1] >= TRAVEL_S  # it waited for the blade to get there
    assert times[4] - times[3] >= TRAVEL_S
    assert [p.value for _, p in rig.mechanism.history] == [
        "closed",
        "between",
        "open",
        "between",
        "closed",
    ]


async def test_close_and_open_when_there_already_do_nothing(rig: Rig) -> None:
    await rig.shutter.close()
    await rig.shutter.open()
    await rig.shutter.open()
    assert rig.states() == ["closed", "opening", "open"]


async def test_two_opens_share_one_movement(rig: Rig) -> None:
    await asyncio.gather(rig.shutter.open(), rig.shutter.open())
    assert rig.states() == ["closed", "opening", "open"]


async def test_close_during_opening_wins(rig: Rig) -> None:
    opening = asyncio.create_task(rig.shutter.open())
    await until(lambda: rig.mechanism.position is MechanismPosition.BETWEEN)
    assert rig.shutter.state is ShutterState.OPENING
    await rig.shutter.close()
    with pytest.raises(
        HardwareError, match=r"^shutter: opening was overridden by a later command$"
    ):
        await opening
    assert rig.states() == ["closed", "opening", "closing", "closed"]
    assert rig.pressed(CLOSED_SWITCH)


async def test_a_cancelled_caller_does_not_stop_the_movement(rig: Rig) -> None:
    opening = asyncio.create_task(rig.shutter.open())
    await asyncio.sleep(0.005)
    opening.cancel()
    await until(lambda: rig.shutter.state is ShutterState.OPEN)
    assert opening.cancelled()


# ---------------------------------------------------------------- faults


async def test_jammed_shutter_faults_naming_the_switch(rig: Rig) -> None:
    rig.mechanism.jam()
    with pytest.raises(ShutterFault) as err:
        await rig.shutter.open()
    message = (
        "open switch (GPIO24) did not confirm open within 0.15 s; "
        "the closed switch (GPIO23) still reports closed"
    )
    assert str(err.value) == f"shutter: {message}"
    assert rig.shutter.state is ShutterState.FAULT and rig.shutter.fault_reason == message
    rig.mechanism.unjam()
    await rig.shutter.close()  # already closed physically: confirmed at once
    assert rig.shutter.fault_reason is None
    assert rig.states() == ["closed", "opening", "fault", "closing", "closed"]


async def test_jam_between_positions_and_recovery(rig: Rig) -> None:
    opening = asyncio.create_task(rig.shutter.open())
    await until(lambda: rig.mechanism.position is MechanismPosition.BETWEEN)
    rig.mechanism.jam()
    with pytest.raises(
        ShutterFault, match=r"^shutter: open switch \(GPIO24\) did not confirm open within 0.15 s$"
    ):
        await opening
    with pytest.raises(ShutterFault, match=r"closed switch \(GPIO23\) did not confirm closed"):
        await rig.shutter.close()
    rig.mechanism.unjam()
    await rig.shutter.close()
    assert rig.states() == ["closed", "opening", "fault", "closing", "fault", "closing", "closed"]


async def test_refresh_notices_a_shutter_pushed_by_hand(rig: Rig) -> None:
    assert rig.shutter.refresh() is ShutterState.CLOSED
    rig.mechanism.jam()
    rig.mechanism.push(MechanismPosition.OPEN)
    assert rig.shutter.refresh() is ShutterState.FAULT
    assert rig.shutter.fault_reason == "closed switch (GPIO23) no longer confirms closed"


def test_a_shutter_that_is_not_closed_at_start_is_in_fault(factory: MockFactory) -> None:
    shutter = GpioShutter(SERVO, closed_switch_pin=CLOSED_SWITCH, timeout_s=0.05)
    try:  # no mechanism presses the switch
        assert shutter.state is ShutterState.FAULT
        assert shutter.fault_reason == (
            "at start: closed switch (GPIO23) did not confirm closed within 0.05 s"
        )
        assert factory.pin(SERVO).frequency == 50  # still pulling it closed
    finally:
        shutter.release()


# ---------------------------------------------------------------- release and setup


async def test_release_drives_closed_and_lets_go(rig: Rig) -> None:
    await rig.shutter.open()
    rig.shutter.release()
    assert rig.shutter.state is ShutterState.CLOSED
    assert rig.states() == ["closed", "opening", "open", "closing", "closed"]
    assert rig.mechanism.position is MechanismPosition.CLOSED
    assert rig.factory.pin(SERVO).frequency is None
    await rig.shutter.close()  # closing is always allowed
    with pytest.raises(DeviceReleased, match="shutter has been released"):
        await rig.shutter.open()
    rig.shutter.release()


async def test_release_of_a_jammed_shutter_says_so(rig: Rig) -> None:
    await rig.shutter.open()
    rig.mechanism.jam()
    rig.shutter.release()
    assert rig.shutter.state is ShutterState.FAULT
    assert rig.shutter.fault_reason == (
        "closed switch (GPIO23) did not confirm closed within 0.15 s; the open switch (GPIO24) "
        "still reports open; released anyway, the spring must close it"
    )


async def test_release_during_a_movement_ends_it(rig: Rig) -> None:
    opening = asyncio.create_task(rig.shutter.open())
    await until(lambda: rig.mechanism.position is MechanismPosition.BETWEEN)
    rig.shutter.release()
    with pytest.raises(HardwareError, match="opening was overridden"):
        await opening
    assert rig.shutter.state is ShutterState.CLOSED
    assert rig.mechanism.position is MechanismPosition.CLOSED


async def test_without_switches_the_travel_time_is_trusted(factory: MockFactory) -> None:
    shutter = GpioShutter(SERVO, travel_s=0.03, detach_when_closed=False)
    try:
        await shutter.open()
        await shutter.close()
        times = [t for t, _ in shutter.history]
        assert times[2] - times[1] >= 0.03 and times[4] - times[3] >= 0.03
        servo = factory.pin(SERVO)
        assert servo.state / servo.frequency == pytest.approx(0.001)  # held closed
    finally:
        shutter.release()


def test_a_pin_factory_passed_in_wins(factory: MockFactory) -> None:
    own = MockFactory(pin_class=MockPWMPin)
    shutter = GpioShutter(SERVO, pin_factory=own, detach_when_closed=False)
    try:
        assert own.pin(SERVO).frequency == 50
        assert factory.pin(SERVO).frequency is None  # the default factory was not touched
    finally:
        shutter.release()
        own.close()


def test_servo_without_pwm_is_a_hardware_error() -> None:
    plain = MockFactory()  # MockPin: no PWM (PITFALLS)
    try:
        with pytest.raises(HardwareError, match=r"^cannot set up the shutter servo on GPIO18: "):
            GpioShutter(SERVO, pin_factory=plain)
    finally:
        plain.close()


# ---------------------------------------------------------------- pin map


def test_packaged_pin_map() -> None:
    night = load_pin_map("nightcam")
    assert night.shutter_servo in (12, 13, 18, 19)  # hardware PWM
    assert night.ir_light is not None and night.button == 22  # the citizen's privacy button
    tv = load_pin_map("tv")
    assert tv.button is not None and tv.ir_light is None
    for pins in (night, tv):
        used = list(pins.used().values())
        assert len(used) == len(set(used)) and all(0 <= pin <= 27 for pin in used)


def write_map(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pins.toml"
    path.write_text(text)
    return path


def test_pin_map_refuses_a_pin_used_twice(tmp_path: Path) -> None:
    path = write_map(tmp_path, "[nightcam]\nshutter_servo = 18\nled = 18\n[tv]\nled = 5\n")
    with pytest.raises(ConfigError) as err:
        load_pin_map("tv", path)
    assert str(err.value) == (
        f"pin map {path} is invalid: nightcam: GPIO18 is used more than once (shutter_servo, led)"
    )


def test_pin_map_refuses_unknown_keys_and_bad_pins_in_one_error(tmp_path: Path) -> None:
    path = write_map(tmp_path, "[nightcam]\nbuzzer = 4\nled = 28\n[toaster]\n")
    with pytest.raises(ConfigError) as err:
        load_pin_map("nightcam", path)
    assert str(err.value) == (
        f"pin map {path} is invalid: nightcam.led: Input should be less than or equal to 27; "
        "nightcam.buzzer: unknown key; toaster: unknown profile"
    )


def test_pin_map_unreadable_or_not_toml_or_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^cannot read pin map .*missing\.toml"):
        load_pin_map("tv", tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"^pin map .* is not valid TOML: "):
        load_pin_map("tv", write_map(tmp_path, "[tv\n"))
    with pytest.raises(ConfigError, match=r"^pin map .* is invalid: tv.led: Input should be a"):
        load_pin_map("tv", write_map(tmp_path, "[tv]\nled = true\n"))
    with pytest.raises(
        ConfigError, match=r"^no pin map for unit profile 'toaster': expected one of 'nightcam'"
    ):
        load_pin_map("toaster")
    assert load_pin_map("tv", write_map(tmp_path, "[tv]\nled = 5\n")) == PinMap(led=5)


async def test_a_servo_that_fails_leaves_the_shutter_in_fault_not_opening(rig: Rig) -> None:
    rig.shutter._servo.close()  # the backend refuses from now on
    with pytest.raises(ShutterFault, match=r"^shutter: servo failed: "):
        await rig.shutter.open()
    assert rig.states() == ["closed", "opening", "fault"]
