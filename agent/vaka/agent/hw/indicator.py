"""The indicator LED: lit whenever the camera runs (DESIGN rule 2), so the citizen can see it."""

from vaka.agent.hw.light import GpioLight, LightState

__all__ = ["IndicatorLed", "LightState"]


class IndicatorLed(GpioLight):
    """The camera's indicator LED on one GPIO pin; see :class:`~vaka.agent.hw.light.GpioLight`.

    The call session switches it on whenever the camera runs and off when it stops; it is off at
    start and after :meth:`release`. Wire it so that an unpowered pin leaves it dark.
    """

    kind = "led"
