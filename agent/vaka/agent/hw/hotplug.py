"""Devices coming and going: the camera, USB audio, the CEC device and the HDMI link.

:class:`Hotplug` is the small base with the listener API; :class:`HotplugMonitor` the real one
over a ``pyudev.Monitor``, and :class:`~vaka.agent.hw.fake_hotplug.FakeHotplug` the one tests and
``--simulate`` drive. Listeners get a typed :class:`HotplugEvent` on the event loop.
"""

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from vaka.agent.hw.base import StateSource
from vaka.errors import HardwareError

log = logging.getLogger(__name__)

#: How many events a source remembers in :attr:`Hotplug.history`.
HISTORY_LIMIT = 1000

#: Present while systemd-udevd runs: then its processed events are used, else the kernel's.
UDEV_CONTROL = Path("/run/udev/control")


class HotplugKind(Enum):
    """What kind of device came or went."""

    CAMERA = "camera"  # a V4L2 capture node (video4linux)
    AUDIO = "audio"  # a sound card (USB speakerphone, microphone)
    CEC = "cec"  # the kernel CEC device
    HDMI = "hdmi"  # an HDMI connector's link to the TV (drm)


class HotplugAction(Enum):
    """Whether it came or went."""

    ADDED = "added"
    REMOVED = "removed"


@dataclass(frozen=True)
class HotplugEvent:
    """One device came or went; ``device`` names it (``/dev/video0``, ``card1``, ...)."""

    kind: HotplugKind
    action: HotplugAction
    device: str

    @property
    def added(self) -> bool:
        """Whether the device came."""
        return self.action is HotplugAction.ADDED

    def __str__(self) -> str:
        return f"{self.kind.value} {self.action.value}: {self.device}"


HotplugListener = Callable[[HotplugEvent], None]

#: The udev subsystems watched, and what each one's devices are.
SUBSYSTEMS = {
    "video4linux": HotplugKind.CAMERA,
    "sound": HotplugKind.AUDIO,
    "cec": HotplugKind.CEC,
    "drm": HotplugKind.HDMI,
}
_ACTIONS = {"add": HotplugAction.ADDED, "remove": HotplugAction.REMOVED}
_SOUND_CARD = re.compile(r"card\d+")


class Hotplug:
    """Base for a source of hotplug events.

    An implementation **must** deliver events by calling :meth:`_emit` on the event loop's thread.
    It **may** override :meth:`_start` and :meth:`_stop` (both awaited on the loop; the default
    does nothing). :meth:`start` and :meth:`stop` are safe to call twice.
    """

    def __init__(self) -> None:
        self._listeners: list[HotplugListener] = []
        self._lock = threading.Lock()
        self._running = False
        #: ``(time.monotonic(), event)`` for every event delivered, oldest first.
        self.history: list[tuple[float, HotplugEvent]] = []

    @property
    def running(self) -> bool:
        """Whether :meth:`start` has been called and :meth:`stop` not yet."""
        return self._running

    def subscribe(self, listener: HotplugListener) -> Callable[[], None]:
        """Call ``listener(event)`` on the loop for every event; returns an unsubscribe function
        that is safe to call twice."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    async def start(self) -> None:
        """Start watching."""
        if self._running:
            return
        await self._start()
        self._running = True

    async def stop(self) -> None:
        """Stop watching; no listener is called after this returns."""
        if not self._running:
            return
        self._running = False
        await self._stop()

    async def __aenter__(self) -> "Hotplug":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _start(self) -> None:
        """Begin delivering events."""

    async def _stop(self) -> None:
        """Stop delivering events."""

    def _emit(self, event: HotplugEvent) -> None:
        """Record ``event`` and call every listener; a failing listener is logged and skipped."""
        with self._lock:
            self.history.append((time.monotonic(), event))
            if len(self.history) > HISTORY_LIMIT:
                del self.history[: len(self.history) - HISTORY_LIMIT]
            listeners = list(self._listeners)
        log.info("hotplug: %s", event)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("hotplug listener failed on %s", event)


class HotplugMonitor(Hotplug):
    """Hotplug from udev, through ``pyudev.Monitor`` and a ``pyudev.MonitorObserver`` thread.

    Watches the ``video4linux`` (``videoN`` nodes: camera), ``sound`` (``cardN``: audio),
    ``cec`` and ``drm`` subsystems. DRM reports HDMI hotplug as a change of the card, so on every
    DRM event the HDMI connectors' ``status`` is read again and a change gives an ``hdmi``
    added/removed event named after the connector (``card1-HDMI-A-1``).

    Event source, in order: ``source`` if given; ``"udev"`` (events after udev rules ran) while
    systemd-udevd runs; else ``"kernel"`` (raw uevents), with a warning. Reading and translating
    happen on the observer thread; listeners run on the loop that called :meth:`start`.
    """

    def __init__(self, *, source: str | None = None) -> None:
        super().__init__()
        if source not in (None, "udev", "kernel"):
            raise ValueError(f"udev event source must be 'udev' or 'kernel', got {source!r}")
        self.source = source
        self._loop: asyncio.AbstractEventLoop | None = None
        self._observer: Any = None
        self._context: Any = None
        self._hdmi: dict[str, bool] = {}

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._start_observer)

    async def _stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            await asyncio.to_thread(observer.stop)  # joins the thread
        log.debug("hotplug monitor stopped")

    def _start_observer(self) -> None:
        import pyudev  # the agent extra; imported here so the fakes work without it

        source = self.source or default_source()
        try:
            self._context = pyudev.Context()
            monitor = pyudev.Monitor.from_netlink(self._context, source=source)
            for subsystem in SUBSYSTEMS:
                monitor.filter_by(subsystem)
            self._hdmi = self._scan_hdmi()
            observer = pyudev.MonitorObserver(
                monitor, callback=self._on_device, name="vaka-hotplug"
            )
            observer.start()
        except (OSError, ImportError) as err:
            raise HardwareError(f"cannot watch for hotplug ({source} events): {err}") from err
        self._observer = observer
        log.info(
            "hotplug: watching %s (%s events), HDMI %s",
            ", ".join(SUBSYSTEMS),
            source,
            _describe(self._hdmi),
        )

    def _on_device(self, device: Any) -> None:
        """Observer thread: translate and hand the events to the loop."""
        try:
            events = self.translate(device)
        except Exception:
            log.exception("hotplug: could not read a udev event")
            return
        loop = self._loop
        if loop is None:
            return
        for event in events:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: HotplugEvent) -> None:
        if self._running:
            self._emit(event)

    def translate(self, device: Any) -> list[HotplugEvent]:
        """The events a ``pyudev.Device`` from the monitor stands for (often none)."""
        kind = SUBSYSTEMS.get(str(device.subsystem))
        if kind is None:
            return []
        if kind is HotplugKind.HDMI:
            return self._hdmi_changes()
        action = _ACTIONS.get(str(device.action))
        name = str(device.sys_name or "")
        if action is None:
            return []
        if kind is HotplugKind.CAMERA and not name.startswith("video"):
            return []
        if kind is HotplugKind.AUDIO and not _SOUND_CARD.fullmatch(name):
            return []
        node = device.device_node
        return [HotplugEvent(kind, action, str(node) if node else name)]

    def _hdmi_changes(self) -> list[HotplugEvent]:
        now = self._scan_hdmi()
        events = []
        for connector in sorted(set(now) | set(self._hdmi)):
            before, after = self._hdmi.get(connector, False), now.get(connector, False)
            if before != after:
                action = HotplugAction.ADDED if after else HotplugAction.REMOVED
                events.append(HotplugEvent(HotplugKind.HDMI, action, connector))
        self._hdmi = now
        return events

    def _scan_hdmi(self) -> dict[str, bool]:
        """Each HDMI connector and whether a display is connected to it (reads sysfs)."""
        connected: dict[str, bool] = {}
        if self._context is None:
            return connected
        for device in self._context.list_devices(subsystem="drm"):
            name = str(device.sys_name)
            if "-HDMI-" in name:
                status = device.attributes.get("status")
                connected[name] = status is not None and bytes(status).strip() == b"connected"
        return connected


def default_source() -> str:
    """``"udev"`` while systemd-udevd runs, else ``"kernel"`` (with a warning)."""
    if UDEV_CONTROL.exists():
        return "udev"
    log.warning(
        "hotplug: systemd-udevd is not running (%s missing), using kernel events", UDEV_CONTROL
    )
    return "kernel"


def _describe(hdmi: dict[str, bool]) -> str:
    if not hdmi:
        return "none"
    return ", ".join(f"{name} {'connected' if up else 'disconnected'}" for name, up in hdmi.items())


def refresh_on_hotplug(
    hotplug: Hotplug, source: StateSource[Any], kinds: Iterable[HotplugKind]
) -> Callable[[], None]:
    """On every event of ``kinds``, call ``source.refresh()`` in a worker thread.

    For devices that learn their state by looking, such as
    :class:`~vaka.agent.hw.camera.V4l2CameraDevice`. Call it on the loop; returns the unsubscribe
    function.
    """
    wanted = frozenset(kinds)
    loop = asyncio.get_running_loop()

    def refresh() -> None:
        if source.released:
            return
        try:
            source.refresh()
        except Exception:
            log.exception("%s: refresh after hotplug failed", source.name)

    def listener(event: HotplugEvent) -> None:
        if event.kind in wanted:
            loop.run_in_executor(None, refresh)

    return hotplug.subscribe(listener)
