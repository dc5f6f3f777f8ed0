"""What every gpiozero-backed device shares: the pin backend it runs on and error translation.

Choosing a backend (STYLE rule 3): a ``pin_factory`` passed to a device's constructor always wins.
Without one, gpiozero chooses: the ``GPIOZERO_PIN_FACTORY`` environment variable if set, otherwise
its documented fallback order (``lgpio``, ``rpigpio``, ``pigpio``, ``native``), warning with
``PinFactoryFallback`` each time it falls back. Simulation and tests pass a
``gpiozero.pins.mock.MockFactory(pin_class=MockPWMPin)``: a servo needs PWM, which the plain
``MockPin`` lacks.
"""

import logging
from collections.abc import Callable
from typing import TypeVar

from gpiozero import GPIOZeroError

from vaka.errors import HardwareError

log = logging.getLogger(__name__)

T = TypeVar("T")


def gpio_device(what: str, build: Callable[[], T]) -> T:
    """``build()`` a gpiozero device, turning gpiozero's errors into :class:`HardwareError`.

    ``what`` names the device and its pin for the message, e.g. ``"shutter servo on GPIO18"``.
    """
    try:
        return build()
    except GPIOZeroError as err:
        raise HardwareError(f"cannot set up the {what}: {err}") from err


def close_quietly(*devices: object) -> None:
    """Close gpiozero devices, skipping ``None``; a failure is logged and the rest still close."""
    for device in devices:
        if device is None:
            continue
        try:
            device.close()  # type: ignore[attr-defined]
        except Exception:
            log.exception("closing %r failed", device)
