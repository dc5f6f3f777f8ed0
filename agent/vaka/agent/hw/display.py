"""The citizen's TV, seen over HDMI-CEC: is it on, in standby, or not there at all?"""

from abc import ABC, abstractmethod
from enum import Enum

from vaka.agent.hw.base import StateSource


class TvState(Enum):
    """The TV's power state; the values are those of ``HealthPayload.tv``."""

    ON = "on"
    STANDBY = "standby"
    ABSENT = "absent"  # no TV answers on the HDMI/CEC bus
    UNKNOWN = "unknown"  # not asked yet, or the TV did not say


class Display(StateSource[TvState], ABC):
    """Base for the TV. It starts :attr:`TvState.UNKNOWN` unless told otherwise.

    An implementation **must** override :meth:`wake` and :meth:`standby` and set the state it
    learns from the TV with ``_set_state`` (a TV also changes by its own remote control). It **may**
    override :meth:`refresh` to ask the TV for its power status, and ``_release``.
    """

    kind = "tv"

    def __init__(self, initial: TvState = TvState.UNKNOWN, *, name: str | None = None) -> None:
        super().__init__(initial, name=name)

    @abstractmethod
    async def wake(self) -> None:
        """Switch the TV on and make it show the unit's input."""

    @abstractmethod
    async def standby(self) -> None:
        """Put the TV into standby."""
