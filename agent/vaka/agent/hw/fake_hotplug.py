"""Simulated hotplug that tests and ``--simulate`` drive: ``plug("camera")``, ``unplug("camera")``.

Devices may be attached to a kind, so that unplugging also changes their state, as the real
device would::

    hotplug = FakeHotplug()
    hotplug.attach("camera", camera)  # a SimulatedCameraDevice
    hotplug.unplug("camera")          # camera.unplug(), then listeners get the event
"""

import logging
from typing import Protocol

from vaka.agent.hw.hotplug import Hotplug, HotplugAction, HotplugEvent, HotplugKind

log = logging.getLogger(__name__)

#: The device name an event carries when none is given.
DEFAULT_DEVICES = {
    HotplugKind.CAMERA: "/dev/video0",
    HotplugKind.AUDIO: "card1",
    HotplugKind.CEC: "/dev/cec0",
    HotplugKind.HDMI: "card1-HDMI-A-1",
}


class Pluggable(Protocol):
    """A simulated device that can be plugged in and out."""

    def plug(self) -> None:
        """The device is connected."""

    def unplug(self) -> None:
        """The device is disconnected."""


class FakeHotplug(Hotplug):
    """A :class:`~vaka.agent.hw.hotplug.Hotplug` whose events come from :meth:`plug` and
    :meth:`unplug`, delivered at once, in order, on the calling thread (call them on the loop).

    Events are delivered whether or not :meth:`start` was called; :attr:`history` records them.
    """

    def __init__(self) -> None:
        super().__init__()
        self._devices: dict[HotplugKind, list[Pluggable]] = {}

    def attach(self, kind: HotplugKind | str, device: Pluggable) -> None:
        """Plug ``device`` in and out with every event of ``kind``."""
        self._devices.setdefault(HotplugKind(kind), []).append(device)

    def plug(self, kind: HotplugKind | str, device: str | None = None) -> HotplugEvent:
        """A device of ``kind`` appears: attached devices are plugged, then listeners called."""
        return self._event(HotplugKind(kind), HotplugAction.ADDED, device)

    def unplug(self, kind: HotplugKind | str, device: str | None = None) -> HotplugEvent:
        """A device of ``kind`` disappears: attached devices are unplugged, then listeners
        called."""
        return self._event(HotplugKind(kind), HotplugAction.REMOVED, device)

    def _event(self, kind: HotplugKind, action: HotplugAction, device: str | None) -> HotplugEvent:
        event = HotplugEvent(kind, action, device or DEFAULT_DEVICES[kind])
        for attached in self._devices.get(kind, []):
            if event.added:
                attached.plug()
            else:
                attached.unplug()
        self._emit(event)
        return event
