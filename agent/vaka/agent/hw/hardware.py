"""All of a unit's hardware in one place, and the simulated set for ``--simulate``.

The GPIO parts (shutter, indicator LED, IR light) are the real gpiozero-backed classes in both
cases; :func:`simulated` runs them on gpiozero's own mock pins, with a
:class:`~vaka.agent.hw.fake_mechanism.FakeMechanism` as the shutter's moving part.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpiozero import Button
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory, MockPWMPin

from vaka.agent.hw.base import StateSource
from vaka.agent.hw.camera import CameraDevice
from vaka.agent.hw.clock import Clock, KernelClock
from vaka.agent.hw.display import Display, TvState
from vaka.agent.hw.fake_camera import SimulatedCameraDevice
from vaka.agent.hw.fake_cec import FakeCecBus, FakeCecDisplay
from vaka.agent.hw.fake_clock import FakeClock
from vaka.agent.hw.fake_hotplug import FakeHotplug
from vaka.agent.hw.fake_mechanism import FakeMechanism
from vaka.agent.hw.gpio import close_quietly
from vaka.agent.hw.hotplug import Hotplug, HotplugKind
from vaka.agent.hw.indicator import IndicatorLed
from vaka.agent.hw.installer import Installer
from vaka.agent.hw.ir_light import IrLight
from vaka.agent.hw.pins import PinMap, load_pin_map
from vaka.agent.hw.shutter import Shutter
from vaka.agent.hw.shutter_gpio import GpioShutter
from vaka.agent.hw.sound import SimulatedSoundDevice, SoundDevice
from vaka.errors import ConfigError

log = logging.getLogger(__name__)

AnySource = StateSource[Any]

#: The unit profiles and what they have: see DESIGN.md.
PROFILES = ("nightcam", "tv")


@dataclass
class Hardware:
    """The devices of one unit; ``None`` where the profile has no such device."""

    camera: CameraDevice | None = None
    #: the TV unit's USB microphone or speakerphone
    sound: SoundDevice | None = None
    shutter: Shutter | None = None
    display: Display | None = None
    led: IndicatorLed | None = None
    ir_light: IrLight | None = None
    #: The citizen's button (the nightcam's privacy button); a gpiozero ``Button`` whose
    #: ``when_pressed`` the profile sets (a test drives its mock pin low to press it).
    button: Button | None = None
    #: Where devices appearing and disappearing are reported (udev, or the fake one).
    hotplug: Hotplug | None = None
    #: Whether the clock is synchronised: the kernel's, or a fake that says so (simulated).
    clock: Clock = field(default_factory=KernelClock)
    #: Installs system update bundles and reboots (RAUC, or the recording fake).
    installer: Installer | None = None
    #: The simulated shutter mechanism (only from :func:`simulated`): tests ``jam()`` it.
    mechanism: FakeMechanism | None = None
    #: A pin factory these devices own, closed last by :meth:`close` (the mock one from
    #: :func:`simulated`); ``None`` when they use gpiozero's shared default.
    pin_factory: Factory | None = None
    _closed: bool = field(default=False, init=False, repr=False)

    def sources(self) -> list[AnySource]:
        """Every device present, shutter first."""
        devices: list[AnySource | None] = [
            self.shutter,
            self.camera,
            self.sound,
            self.display,
            self.led,
            self.ir_light,
        ]
        return [device for device in devices if device is not None]

    def close(self) -> None:
        """Release every device, the shutter first, then the mechanism and pins. Safe twice.

        Releasing an open shutter drives it closed and waits for that (blocking, bounded by its
        timeout): await ``shutter.close()`` before, while the loop runs.
        """
        for device in self.sources():
            try:
                device.release()
            except Exception:
                log.exception("releasing %s failed", device.name)
        if self._closed:
            return
        self._closed = True
        close_quietly(self.button)
        if self.mechanism is not None:
            self.mechanism.close()
        close_quietly(self.pin_factory)


def gpio_hardware(
    pins: PinMap,
    *,
    pin_factory: Factory | None = None,
    travel_s: float = 0.5,
    timeout_s: float = 2.0,
) -> Hardware:
    """The GPIO devices of a pin map (shutter, LED, IR light) on ``pin_factory``.

    Building the shutter blocks until it confirms closed (see
    :class:`~vaka.agent.hw.shutter_gpio.GpioShutter`). The caller adds the camera and the display,
    and sets :attr:`Hardware.pin_factory` if the result should close the factory.
    """
    hardware = Hardware()
    try:
        if pins.shutter_servo is not None:
            hardware.shutter = GpioShutter(
                pins.shutter_servo,
                closed_switch_pin=pins.shutter_closed_switch,
                open_switch_pin=pins.shutter_open_switch,
                travel_s=travel_s,
                timeout_s=timeout_s,
                pin_factory=pin_factory,
            )
        if pins.led is not None:
            hardware.led = IndicatorLed(pins.led, pin_factory=pin_factory)
        if pins.ir_light is not None:
            hardware.ir_light = IrLight(pins.ir_light, pin_factory=pin_factory)
        if pins.button is not None:
            hardware.button = Button(pins.button, pull_up=True, pin_factory=pin_factory)
    except BaseException:
        hardware.close()
        raise
    return hardware


def simulated(
    profile: str,
    *,
    travel_s: float = 0.04,
    timeout_s: float = 1.0,
    pin_map: Path | None = None,
) -> Hardware:
    """Fake hardware for a profile, the GPIO parts on gpiozero's mock pins.

    ``nightcam``: camera, shutter, LED and IR light; ``tv``: camera, shutter, LED and a TV on a
    fake CEC bus (:class:`~vaka.agent.hw.fake_cec.FakeCecBus` records what was sent). Both get a
    :class:`~vaka.agent.hw.fake_hotplug.FakeHotplug` that plugs the camera (and the TV's HDMI), and
    a synchronised :class:`~vaka.agent.hw.fake_clock.FakeClock` (not the host's clock). The pins
    come from the packaged pin map (or ``pin_map``); the simulated shutter takes ``travel_s`` to
    move and faults after ``timeout_s`` (see :attr:`Hardware.mechanism` to jam it).
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown unit profile {profile!r}: expected 'tv' or 'nightcam'")
    pins = load_pin_map(profile, pin_map)
    factory = MockFactory(pin_class=MockPWMPin)  # a servo needs PWM, which MockPin lacks
    mechanism = None
    if pins.shutter_servo is not None:  # first, so that it holds the closed switch at start
        mechanism = FakeMechanism(
            factory,
            servo_pin=pins.shutter_servo,
            closed_switch_pin=pins.shutter_closed_switch,
            open_switch_pin=pins.shutter_open_switch,
            travel_s=travel_s,
        )
    try:
        hardware = gpio_hardware(pins, pin_factory=factory, travel_s=travel_s, timeout_s=timeout_s)
    except BaseException:
        if mechanism is not None:
            mechanism.close()
        close_quietly(factory)
        raise
    hardware.mechanism, hardware.pin_factory = mechanism, factory
    hardware.camera = SimulatedCameraDevice()
    hotplug = FakeHotplug()
    hotplug.attach(HotplugKind.CAMERA, hardware.camera)
    if profile == "tv":
        display = FakeCecDisplay(FakeCecBus(TvState.STANDBY))
        hotplug.attach(HotplugKind.HDMI, display)
        hardware.display = display
        sound = SimulatedSoundDevice()
        hotplug.attach(HotplugKind.AUDIO, sound)
        hardware.sound = sound
    hardware.hotplug = hotplug
    hardware.clock = FakeClock(synchronised=True)
    return hardware
