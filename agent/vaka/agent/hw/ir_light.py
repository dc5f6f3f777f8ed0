"""The infrared illuminator of the ``nightcam``: lights the bed for the NoIR camera in the dark."""

from vaka.agent.hw.light import GpioLight, LightState

__all__ = ["IrLight", "LightState"]


class IrLight(GpioLight):
    """The IR illuminator, switched by one GPIO pin (through a transistor or MOSFET).

    See :class:`~vaka.agent.hw.light.GpioLight`. The call session switches it on only while
    streaming in the dark; it is off at start and after :meth:`release`.
    """

    kind = "ir_light"
