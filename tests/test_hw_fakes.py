"""The hardware base class and the simulated devices behave like the state machines they claim."""

import asyncio
import itertools
import logging
import threading
from enum import Enum
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaka.agent.hw.base import DeviceReleased, HardwareError, StateSource
from vaka.agent.hw.camera import CameraPresence, V4l2CameraDevice
from vaka.agent.hw.display import TvState
from vaka.agent.hw.fake_camera import SimulatedCameraDevice
from vaka.agent.hw.fake_display import SimulatedDisplay
from vaka.agent.hw.fake_shutter import SimulatedShutter
from vaka.agent.hw.hardware import Hardware, simulated
from vaka.agent.hw.shutter import ShutterFault, ShutterState
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


# ---------------------------------------------------------------- shutter


async def test_shutter_opens_and_closes_through_the_intermediate_states() -> None:
    shutter = SimulatedShutter(travel_s=0.02)
    assert shutter.state is ShutterState.CLOSED
    await shutter.open()
    assert shutter.is_open
    await shutter.close()
    assert [s.value for _, s in shutter.history] == [
        "closed",
        "opening",
        "open",
        "closing",
        "closed",
    ]
    times = [t for t, _ in shutter.history]
    assert times[2] - times[1] >= 0.015  # the travel time is real


async def test_close_during_opening_wins() -> None:
    shutter = SimulatedShutter(travel_s=0.05)
    opening = asyncio.create_task(shutter.open())
    await asyncio.sleep(0.01)
    assert shutter.state is ShutterState.OPENING
    await shutter.close()
    with pytest.raises(HardwareError, match="opening was overridden"):
        await opening
    assert shutter.state is ShutterState.CLOSED
    assert ShutterState.OPEN not in [s for _, s in shutter.history]


async def test_two_opens_share_one_movement() -> None:
    shutter = SimulatedShutter(travel_s=0.03)
    await asyncio.gather(shutter.open(), shutter.open())
    assert [s.value for _, s in shutter.history] == ["closed", "opening", "open"]


async def test_jammed_shutter_faults_until_unjammed() -> None:
    shutter = SimulatedShutter(travel_s=0.05)
    opening = asyncio.create_task(shutter.open())
    await asyncio.sleep(0.01)
    shutter.jam()
    with pytest.raises(ShutterFault, match="jammed before reaching open"):
        await opening
    assert shutter.state is ShutterState.FAULT
    with pytest.raises(ShutterFault, match="is jammed"):
        await shutter.close()
    shutter.unjam()
    await shutter.close()
    assert [s.value for _, s in shutter.history] == [
        "closed",
        "opening",
        "fault",
        "closing",
        "closed",
    ]


async def test_released_shutter_springs_closed_and_refuses_to_open() -> None:
    shutter = SimulatedShutter(travel_s=0.01)
    await shutter.open()
    shutter.release()
    assert shutter.state is ShutterState.CLOSED
    await shutter.close()  # closing is always allowed
    with pytest.raises(DeviceReleased):
        await shutter.open()


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


# ---------------------------------------------------------------- hardware


def test_simulated_profiles() -> None:
    night = simulated("nightcam")
    assert night.camera is not None and night.shutter is not None and night.display is None
    tv = simulated("tv")
    assert tv.display is not None and tv.display.state is TvState.STANDBY
    assert tv.camera is not None and tv.camera.present
    assert tv.shutter is not None and tv.shutter.state is ShutterState.CLOSED
    with pytest.raises(ConfigError, match="unknown unit profile 'toaster'"):
        simulated("toaster")


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
    assert order[0] == "release shutter"
    assert order[1] == "shutter"  # it sprang closed, and said so
    assert order.count("release camera") == 1 and order.count("release tv") == 1
    assert all(device.released for device in hardware.sources())
    assert Hardware().sources() == []
