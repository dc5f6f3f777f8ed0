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
    override :meth:`refresh`, :meth:`poll` (ask the TV for its power status), :meth:`watch` (keep
    asking while the agent runs: a TV whose changes nobody reports), :meth:`device_changed`
    (hotplug of the CEC device or the HDMI link) and ``_release``.
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

    async def poll(self) -> TvState:
        """Ask the TV for its power status, update :attr:`state` and return it.

        The default returns :meth:`refresh`: for a TV whose changes are reported by themselves.

        :raises HardwareError: the TV could not be asked.
        """
        return self.refresh()

    async def watch(self, interval_s: float = 30.0) -> None:
        """Keep :attr:`state` up to date until cancelled or released.

        The default returns at once: a TV whose changes are reported needs no watching.
        """

    def device_changed(self, present: bool) -> None:
        """Hotplug: the CEC device or the HDMI link came (``True``) or went (``False``).

        The default does nothing: a TV that learns of it by itself.
        """
