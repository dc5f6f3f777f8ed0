"""Lights switched by one GPIO pin: the camera's indicator LED and the IR illuminator."""

from enum import Enum

from gpiozero import LED
from gpiozero.pins import Factory

from vaka.agent.hw.base import StateSource
from vaka.agent.hw.gpio import close_quietly, gpio_device


class LightState(Enum):
    """Whether a light is on."""

    ON = "on"
    OFF = "off"


class GpioLight(StateSource[LightState]):
    """A light on one GPIO output (gpiozero :class:`~gpiozero.LED`), off at start and on release.

    :meth:`on` and :meth:`off` set one pin and return at once; they are safe to call from the
    event loop and from any thread. Subclasses only set :attr:`kind` and document what the light
    is for. A ``pin_factory`` passed here wins over gpiozero's default (see
    :mod:`vaka.agent.hw.gpio`).
    """

    kind = "light"

    def __init__(
        self,
        pin: int,
        *,
        active_high: bool = True,
        pin_factory: Factory | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(LightState.OFF, name=name)
        self.pin = pin
        self._device = gpio_device(
            f"{self.name} on GPIO{pin}",
            lambda: LED(pin, active_high=active_high, initial_value=False, pin_factory=pin_factory),
        )

    @property
    def is_on(self) -> bool:
        """Whether the light is on."""
        return self.state is LightState.ON

    def on(self) -> None:
        """Switch the light on."""
        self._check_usable()
        self._device.on()
        self._set_state(LightState.ON)

    def off(self) -> None:
        """Switch the light off; does nothing after :meth:`release` (the light is off then)."""
        if self.released:
            return
        self._device.off()
        self._set_state(LightState.OFF)

    def _release(self) -> None:
        try:
            self._device.off()
        finally:
            close_quietly(self._device)
            self._set_state(LightState.OFF)
