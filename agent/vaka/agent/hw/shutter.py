"""The privacy shutter in front of the camera: closed unless an authorised session streams."""

from abc import ABC, abstractmethod
from enum import Enum

from vaka.agent.hw.base import HardwareError, StateSource


class ShutterState(Enum):
    """Where the shutter is; the values are those of ``HealthPayload.shutter``."""

    CLOSED = "closed"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    FAULT = "fault"


class ShutterFault(HardwareError, RuntimeError):
    """The shutter did not reach the position it was sent to."""


class Shutter(StateSource[ShutterState], ABC):
    """Base for a privacy shutter. It starts :attr:`ShutterState.CLOSED`.

    An implementation **must** override :meth:`open` and :meth:`close`, passing through
    ``opening``/``closing`` to ``open``/``closed`` with ``_set_state``, and go to ``fault`` (raising
    :class:`ShutterFault`) when the shutter does not get there. :meth:`close` must win over an
    :meth:`open` in progress and must not raise on a released device (closing is always allowed).
    It **may** override ``_release``; the hardware's own default position must be closed.
    """

    kind = "shutter"

    def __init__(self, *, name: str | None = None) -> None:
        super().__init__(ShutterState.CLOSED, name=name)

    @property
    def is_open(self) -> bool:
        """Whether the shutter is fully open."""
        return self.state is ShutterState.OPEN

    @abstractmethod
    async def open(self) -> None:
        """Open the shutter; returns once it is open, raises :class:`ShutterFault` if it jams."""

    @abstractmethod
    async def close(self) -> None:
        """Close the shutter; returns once it is closed, raises :class:`ShutterFault` if it jams."""
