"""The hardware base class and the simulated devices behave like the state machines they claim."""

import itertools
import logging
import threading
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any, get_args

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin
from hypothesis import given
from hypothesis import strategies as st

from vaka.agent.hw.base import DeviceReleased, HardwareError, StateSource
from vaka.agent.hw.camera import CameraPresence, V4l2CameraDevice
from vaka.agent.hw.display import TvState
from vaka.agent.hw.fake_camera import SimulatedCameraDevice
from vaka.agent.hw.fake_display import SimulatedDisplay
from vaka.agent.hw.hardware import Hardware, simulated
from vaka.agent.hw.indicator import IndicatorLed
from vaka.agent.hw.ir_light import IrLight
from vaka.agent.hw.light import LightState
from vaka.agent.hw.shutter import ShutterState
from vaka.agent.hw.shutter_gpio import GpioShutter
from vaka.errors import ConfigError, VakaError
from vaka.protocol.messages import HealthPayload


class Colour(Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Lamp(StateSource[Colour]):
    kind = "lamp"

    def __init__(self) -> None:
        super().__init__(Colour.RED)
        self.released_times = 0

    def set(self, colour: Colour) -> None:
        self._set_state(colour)

    def _release(self) -> None:
        self.released_times += 1


def states(source: StateSource[Colour]) -> list[Colour]:
    return [state for _, state in source.history]


# ---------------------------------------------------------------- StateSource


def test_history_records_states_in_order_with_rising_times() -> None:
    lamp = Lamp()
    lamp.set(Colour.GREEN)
    lamp.set(Colour.GREEN)
    lamp.set(Colour.BLUE)
    lamp.set(Colour.RED)
    assert states(lamp) == [Colour.RED, Colour.GREEN, Colour.BLUE, Colour.RED]
    times = [t for t, _ in lamp.history]
    assert times == sorted(times)


def test_listeners_only_on_real_change_and_unsubscribe_works() -> None:
    lamp = Lamp()
    seen: list[Colour] = []
    unsubscribe = lamp.subscribe(seen.append)
    lamp.set(Colour.RED)  # no change
    lamp.set(Colour.GREEN)
    lamp.set(Colour.GREEN)  # no change
    unsubscribe()
    unsubscribe()  # twice is fine
    lamp.set(Colour.BLUE)
    assert seen == [Colour.GREEN]
    assert lamp.listener_count == 0


def test_failing_listener_is_logged_and_others_still_called(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lamp = Lamp()
    seen: list[Colour] = []

    def broken(_state: Colour) -> None:
        raise RuntimeError("listener bug")

    lamp.subscribe(broken)
    lamp.subscribe(seen.append)
    with caplog.at_level(logging.INFO, logger="vaka.agent.hw.base"):
        lamp.set(Colour.BLUE)
    assert seen == [Colour.BLUE]
    assert lamp.state is Colour.BLUE
    assert "lamp red -> blue" in caplog.text
    assert "lamp: state listener failed" in caplog.text


def test_release_is_safe_twice_and_blocks_further_use() -> None:
    lamp = Lamp()
    unsubscribe = lamp.subscribe(lambda _s: None)
    lamp.release()
    lamp.release()
    assert lamp.released_times == 1
    assert lamp.listener_count == 0
    unsubscribe()  # after release too
    with pytest.raises(DeviceReleased, match="lamp has been released") as err:
        lamp.refresh()
    assert isinstance(err.value, VakaError) and isinstance(err.value, RuntimeError)


def test_listeners_called_from_other_threads_see_every_change() -> None:
    lamp = Lamp()
    seen: list[Colour] = []
    lamp.subscribe(seen.append)
    thread = threading.Thread(target=lamp.set, args=(Colour.GREEN,))
    thread.start()
    thread.join()
    assert seen == [Colour.GREEN]


@given(st.lists(st.sampled_from(Colour), max_size=30))
def test_history_never_repeats_and_listeners_match_changes(sequence: list[Colour]) -> None:
    lamp = Lamp()
    calls: list[Colour] = []
    lamp.subscribe(calls.append)
    for colour in sequence:
        lamp.set(colour)
    recorded = states(lamp)
    assert all(a is not b for a, b in itertools.pairwise(recorded))
    assert recorded[1:] == calls
    assert lamp.state is (sequence[-1] if sequence else Colour.RED)


# ---------------------------------------------------------------- enums match the schema


def _literal_values(field: str) -> set[str]:
    annotation = HealthPayload.model_fields[field].annotation
    literal = next(arg for arg in get_args(annotation) if arg is not type(None))
    return set(get_args(literal))


def test_enum_values_match_the_health_schema() -> None:
    assert {s.value for s in ShutterState} == _literal_values("shutter")
    assert {s.value for s in TvState} == _literal_values("tv")


# ---------------------------------------------------------------- camera


def test_simulated_camera_plug_and_unplug() -> None:
    camera = SimulatedCameraDevice()
    seen: list[CameraPresence] = []
    camera.subscribe(seen.append)
    assert camera.present
    camera.unplug()
    camera.unplug()
    camera.plug()
    assert seen == [CameraPresence.ABSENT, CameraPresence.PRESENT]
    assert [s for _, s in camera.history] == [
        CameraPresence.PRESENT,
        CameraPresence.ABSENT,
        CameraPresence.PRESENT,
    ]
    camera.release()
    with pytest.raises(DeviceReleased):
        camera.unplug()


def test_v4l2_camera_follows_its_device_node(tmp_path: Path) -> None:
    node = tmp_path / "video0"
    camera = V4l2CameraDevice(node)
    assert camera.state is CameraPresence.ABSENT
    node.touch()
    assert camera.state is CameraPresence.ABSENT  # only refresh() looks
    assert camera.refresh() is CameraPresence.PRESENT
    node.unlink()
    assert camera.refresh() is CameraPresence.ABSENT
    assert [s.value for _, s in camera.history] == ["absent", "present", "absent"]


# ---------------------------------------------------------------- display


async def test_display_records_commands_and_follows_them() -> None:
    tv = SimulatedDisplay()
    assert tv.state is TvState.STANDBY
    await tv.wake()
    assert tv.state is TvState.ON
    await tv.standby()
    tv.unplug()
    await tv.wake()
    assert tv.state is TvState.ABSENT  # nobody there to wake
    tv.plug()
    tv.press_power()
    assert tv.commands == [("wake",), ("standby",), ("wake",)]
    assert [s.value for _, s in tv.history] == [
        "standby",
        "on",
        "standby",
        "absent",
        "standby",
        "on",
    ]


# ---------------------------------------------------------------- lights


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    """gpiozero's mock pins as the default pin factory, restored after the test."""
    saved = Device.pin_factory
    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        Device.pin_factory = saved
        factory.close()


def test_indicator_led_switches_its_pin_and_goes_dark_on_release(mock_pins: MockFactory) -> None:
    led = IndicatorLed(25)
    pin = mock_pins.pin(25)
    assert led.state is LightState.OFF and not pin.state
    led.on()
    led.on()
    assert led.is_on and pin.state
    led.off()
    led.on()
    led.release()
    assert not pin.state
    assert [s.value for _, s in led.history] == ["off", "on", "off", "on", "off"]
    led.off()  # switching off is always allowed
    with pytest.raises(DeviceReleased, match="led has been released"):
        led.on()


def test_ir_light_active_low_and_a_bad_pin(mock_pins: MockFactory) -> None:
    light = IrLight(17, active_high=False)
    try:
        assert mock_pins.pin(17).state  # off: held high
        light.on()
        assert not mock_pins.pin(17).state and light.is_on
    finally:
        light.release()
    with pytest.raises(HardwareError, match=r"^cannot set up the ir_light on GPIO99: "):
        IrLight(99)


# ---------------------------------------------------------------- hardware


def test_simulated_profiles_have_their_devices() -> None:
    night = simulated("nightcam")
    try:
        assert night.camera is not None and night.shutter is not None and night.display is None
        assert night.led is not None and night.ir_light is not None
        assert isinstance(night.shutter, GpioShutter) and night.mechanism is not None
        assert isinstance(night.led, IndicatorLed) and isinstance(night.ir_light, IrLight)
        assert (night.shutter.servo_pin, night.led.pin, night.ir_light.pin) == (18, 25, 17)
        assert [d.kind for d in night.sources()] == ["shutter", "camera", "led", "ir_light"]
    finally:
        night.close()
    tv = simulated("tv")
    try:
        assert tv.display is not None and tv.display.state is TvState.STANDBY
        assert tv.camera is not None and tv.camera.present
        assert tv.shutter is not None and tv.shutter.state is ShutterState.CLOSED
        assert tv.led is not None and not tv.led.is_on and tv.ir_light is None
        assert [d.kind for d in tv.sources()] == ["shutter", "camera", "sound", "tv", "led"]
    finally:
        tv.close()
    with pytest.raises(ConfigError, match="unknown unit profile 'toaster'"):
        simulated("toaster")


def test_simulated_hardware_runs_on_its_own_mock_pins() -> None:
    saved = Device.pin_factory
    Device.pin_factory = None
    try:
        hardware = simulated("nightcam")
        assert isinstance(hardware.pin_factory, MockFactory)
        assert hardware.pin_factory.pin_class is MockPWMPin
        assert hardware.led is not None and hardware.ir_light is not None
        hardware.led.on()
        hardware.ir_light.on()
        assert hardware.pin_factory.pin(25).state and hardware.pin_factory.pin(17).state
        assert Device.pin_factory is None  # gpiozero's global default was left alone
        hardware.close()
        assert [s.value for _, s in hardware.led.history] == ["off", "on", "off"]
    finally:
        Device.pin_factory = saved


async def test_hardware_close_releases_shutter_first_and_is_safe_twice() -> None:
    hardware = simulated("tv")
    assert hardware.shutter is not None
    await hardware.shutter.open()
    order: list[str] = []

    def watch(device: StateSource[Any]) -> None:
        original = device._release

        def recording() -> None:
            order.append(f"release {device.name}")
            original()

        device.subscribe(lambda _state: order.append(device.name))
        device._release = recording  # type: ignore[method-assign]

    for device in hardware.sources():
        watch(device)
    hardware.close()
    hardware.close()
    assert order[:4] == ["release shutter", "shutter", "shutter", "release camera"]
    assert hardware.shutter.state is ShutterState.CLOSED  # it was driven closed, and said so
    assert order.count("release tv") == 1 and order.count("release led") == 1
    assert all(device.released for device in hardware.sources())
    assert Hardware().sources() == []
