"""Devices that come and go (camera, USB audio, the TV's HDMI/CEC link): each one is reported to
central as a ``hotplug`` event, and the devices that learn their state by looking are told, so
that health (and the TV's screen) show what is missing at once."""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from vaka.agent.hw.camera import V4l2CameraDevice
from vaka.agent.hw.hardware import Hardware
from vaka.agent.hw.hotplug import HotplugEvent, HotplugKind, refresh_on_hotplug
from vaka.agent.hw.sound import UsbSoundCards
from vaka.errors import HardwareError
from vaka.protocol.messages import EventMessage, EventPayload

log = logging.getLogger(__name__)

PublishEvent = Callable[[EventMessage], Coroutine[Any, Any, None]]


class HotplugReporter:
    """Watches ``hardware.hotplug`` while the agent runs."""

    def __init__(self, hardware: Hardware, publish: PublishEvent) -> None:
        self.hardware = hardware
        self.publish = publish
        self._unsubscribe: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start watching (a unit without hotplug support only logs that)."""
        hotplug = self.hardware.hotplug
        if hotplug is None:
            return
        try:
            await hotplug.start()
        except HardwareError as err:
            log.warning("devices coming and going will not be noticed: %s", err)
            return
        self._unsubscribe.append(hotplug.subscribe(self._on_event))
        camera, sound = self.hardware.camera, self.hardware.sound
        if isinstance(camera, V4l2CameraDevice):
            self._unsubscribe.append(refresh_on_hotplug(hotplug, camera, [HotplugKind.CAMERA]))
        if isinstance(sound, UsbSoundCards):
            self._unsubscribe.append(refresh_on_hotplug(hotplug, sound, [HotplugKind.AUDIO]))

    def _on_event(self, event: HotplugEvent) -> None:
        display = self.hardware.display
        if event.kind in (HotplugKind.CEC, HotplugKind.HDMI) and display is not None:
            try:
                display.device_changed(event.added)
            except Exception:
                log.exception("the TV's state after %s could not be updated", event)
        message = EventMessage(
            payload=EventPayload(
                kind="hotplug",
                detail={
                    "device": event.kind.value,
                    "action": event.action.value,
                    "node": event.device[:200],
                },
            )
        )
        task = asyncio.get_running_loop().create_task(self.publish(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop watching."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self.hardware.hotplug is not None:
            await self.hardware.hotplug.stop()
