"""Hotplug: the fake delivers events in order, the udev monitor starts and stops on this machine
and translates udev devices into typed events on the loop."""

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from vaka.agent.hw import hotplug as hotplug_module
from vaka.agent.hw.camera import CameraPresence, V4l2CameraDevice
from vaka.agent.hw.display import TvState
from vaka.agent.hw.fake_camera import SimulatedCameraDevice
from vaka.agent.hw.fake_cec import FakeCecDisplay
from vaka.agent.hw.fake_hotplug import FakeHotplug
from vaka.agent.hw.hotplug import (
    HotplugAction,
    HotplugEvent,
    HotplugKind,
    HotplugMonitor,
    default_source,
    refresh_on_hotplug,
)
from vaka.errors import HardwareError

ADDED, REMOVED = HotplugAction.ADDED, HotplugAction.REMOVED


# ---------------------------------------------------------------- the fake


async def test_fake_delivers_events_in_order() -> None:
    hotplug = FakeHotplug()
    first: list[HotplugEvent] = []
    second: list[str] = []
    hotplug.subscribe(first.append)
    unsubscribe = hotplug.subscribe(lambda e: second.append(str(e)))
    async with hotplug:
        hotplug.unplug("camera")
        hotplug.plug(HotplugKind.CAMERA, "/dev/video2")
        unsubscribe()
        unsubscribe()  # safe twice
        hotplug.unplug("audio")
    assert first == [
        HotplugEvent(HotplugKind.CAMERA, REMOVED, "/dev/video0"),
        HotplugEvent(HotplugKind.CAMERA, ADDED, "/dev/video2"),
        HotplugEvent(HotplugKind.AUDIO, REMOVED, "card1"),
    ]
    assert second == ["camera removed: /dev/video0", "camera added: /dev/video2"]
    times = [t for t, _ in hotplug.history]
    assert times == sorted(times) and [e for _, e in hotplug.history] == first


async def test_fake_updates_attached_devices_before_listeners() -> None:
    hotplug = FakeHotplug()
    camera = SimulatedCameraDevice()
    tv = FakeCecDisplay()
    hotplug.attach("camera", camera)
    hotplug.attach(HotplugKind.HDMI, tv)
    seen: list[tuple[str, str]] = []
    hotplug.subscribe(lambda e: seen.append((e.kind.value, camera.state.value)))
    hotplug.unplug("camera")
    hotplug.unplug("hdmi")
    assert seen == [("camera", "absent"), ("hdmi", "absent")]
    assert tv.state is TvState.ABSENT
    hotplug.plug("camera")
    assert camera.present


async def test_a_failing_listener_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hotplug = FakeHotplug()
    seen: list[HotplugEvent] = []

    def broken(event: HotplugEvent) -> None:
        raise RuntimeError("boom")

    hotplug.subscribe(broken)
    hotplug.subscribe(seen.append)
    hotplug.plug("cec")
    assert seen == [HotplugEvent(HotplugKind.CEC, ADDED, "/dev/cec0")]
    assert "hotplug listener failed on cec added: /dev/cec0" in caplog.messages


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="'printer' is not a valid HotplugKind"):
        FakeHotplug().plug("printer")


async def test_refresh_on_hotplug_updates_a_v4l2_camera(tmp_path: Path) -> None:
    node = tmp_path / "video0"
    camera = V4l2CameraDevice(node)
    assert camera.state is CameraPresence.ABSENT
    hotplug = FakeHotplug()
    unsubscribe = refresh_on_hotplug(hotplug, camera, [HotplugKind.CAMERA])
    node.touch()
    hotplug.plug("audio")  # another kind: not refreshed
    await asyncio.sleep(0.05)
    assert camera.state is CameraPresence.ABSENT
    hotplug.plug("camera", str(node))
    for _ in range(100):
        if camera.present:
            break
        await asyncio.sleep(0.01)
    assert camera.present
    unsubscribe()


# ---------------------------------------------------------------- the udev monitor


@dataclass
class Dev:
    """A stand-in for a ``pyudev.Device`` as the monitor delivers it."""

    subsystem: str
    action: str
    sys_name: str
    device_node: str | None = None


@pytest.mark.parametrize(
    ("device", "events"),
    [
        (Dev("video4linux", "add", "video0", "/dev/video0"), [("camera", "added", "/dev/video0")]),
        (
            Dev("video4linux", "remove", "video1", "/dev/video1"),
            [("camera", "removed", "/dev/video1")],
        ),
        (Dev("video4linux", "add", "v4l-subdev0", "/dev/v4l-subdev0"), []),
        (Dev("video4linux", "change", "video0", "/dev/video0"), []),
        (Dev("sound", "add", "card1"), [("audio", "added", "card1")]),
        (Dev("sound", "remove", "controlC1", "/dev/snd/controlC1"), []),
        (Dev("cec", "remove", "cec0", "/dev/cec0"), [("cec", "removed", "/dev/cec0")]),
        (Dev("usb", "add", "1-1"), []),
    ],
)
def test_udev_devices_are_translated(device: Dev, events: list[tuple[str, str, str]]) -> None:
    got = HotplugMonitor().translate(device)
    assert [(e.kind.value, e.action.value, e.device) for e in got] == events


def test_hdmi_connector_status_changes_are_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monitor = HotplugMonitor()
    scans = iter(
        [
            {"card1-HDMI-A-1": True, "card1-HDMI-A-2": False},
            {"card1-HDMI-A-1": True, "card1-HDMI-A-2": False},
            {"card1-HDMI-A-1": False, "card1-HDMI-A-2": True},
        ]
    )
    monkeypatch.setattr(monitor, "_scan_hdmi", lambda: next(scans))
    change = Dev("drm", "change", "card1")
    assert monitor.translate(change) == [HotplugEvent(HotplugKind.HDMI, ADDED, "card1-HDMI-A-1")]
    assert monitor.translate(change) == []
    assert monitor.translate(change) == [
        HotplugEvent(HotplugKind.HDMI, REMOVED, "card1-HDMI-A-1"),
        HotplugEvent(HotplugKind.HDMI, ADDED, "card1-HDMI-A-2"),
    ]


async def test_monitor_starts_and_stops_cleanly() -> None:
    monitor = HotplugMonitor()
    try:
        await monitor.start()
    except HardwareError as err:  # pragma: no cover - depends on the machine
        pytest.skip(f"this machine does not let a process read udev/kernel uevents: {err}")
    try:
        assert monitor.running
        assert any(t.name == "vaka-hotplug" for t in threading.enumerate())
        await monitor.start()  # safe twice
    finally:
        await monitor.stop()
        await monitor.stop()
    assert not monitor.running
    assert not any(t.name == "vaka-hotplug" for t in threading.enumerate())


async def test_monitor_delivers_observer_events_on_the_loop() -> None:
    monitor = HotplugMonitor()
    try:
        await monitor.start()
    except HardwareError as err:  # pragma: no cover - depends on the machine
        pytest.skip(f"this machine does not let a process read udev/kernel uevents: {err}")
    seen: list[tuple[HotplugEvent, bool]] = []
    monitor.subscribe(
        lambda e: seen.append((e, threading.current_thread() is threading.main_thread()))
    )
    try:
        # What the observer thread does with a device from the monitor.
        thread = threading.Thread(
            target=monitor._on_device, args=(Dev("cec", "add", "cec0", "/dev/cec0"),)
        )
        thread.start()
        thread.join()
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
    finally:
        await monitor.stop()
    assert seen == [(HotplugEvent(HotplugKind.CEC, ADDED, "/dev/cec0"), True)]
    monitor._on_device(Dev("cec", "remove", "cec0", "/dev/cec0"))  # after stop: dropped
    await asyncio.sleep(0.02)
    assert len(seen) == 1


def test_source_falls_back_to_kernel_events_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    control = tmp_path / "control"
    monkeypatch.setattr(hotplug_module, "UDEV_CONTROL", control)
    with caplog.at_level(logging.WARNING):
        assert default_source() == "kernel"
    assert caplog.messages == [
        f"hotplug: systemd-udevd is not running ({control} missing), using kernel events"
    ]
    control.touch()
    assert default_source() == "udev"
    with pytest.raises(ValueError, match="must be 'udev' or 'kernel'"):
        HotplugMonitor(source="netlink")
