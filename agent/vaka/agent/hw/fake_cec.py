"""A simulated HDMI-CEC bus with one TV on it, and a display that drives it like the real one.

Tests and ``--simulate`` assert on what was sent::

    bus = FakeCecBus()
    tv = FakeCecDisplay(bus, phys_addr="1.0.0.0")
    await tv.wake()
    assert bus.sent == [("image-view-on",), ("active-source", "1.0.0.0")]
    assert bus.tv_input == "1.0.0.0"
"""

import logging
import threading
import time

from vaka.agent.hw.base import StateSource
from vaka.agent.hw.cec import NO_ANSWER
from vaka.agent.hw.display import Display, TvState
from vaka.errors import HardwareError

log = logging.getLogger(__name__)

#: A CEC message as recorded: its name, then its operands.
Message = tuple[str, ...]


class FakeCecBus(StateSource[TvState]):
    """The TV end of a CEC bus. Its :attr:`state` is the TV's; :attr:`messages` what was sent.

    The TV obeys ``<Image View On>`` and ``<Standby>`` at once and shows the input named by the
    last ``<Active Source>``. :meth:`unplug` takes it off the bus (messages are then recorded but
    not acknowledged), :meth:`plug` brings it back, :meth:`press_power` is its remote control.
    Power-status queries are counted in :attr:`status_queries`, not recorded as messages.
    """

    kind = "cec-bus"

    def __init__(self, tv: TvState = TvState.STANDBY, *, name: str | None = None) -> None:
        super().__init__(tv, name=name)
        #: ``(time.monotonic(), message)`` for every message sent, oldest first.
        self.messages: list[tuple[float, Message]] = []
        #: The physical address of the input the TV shows (``None``: not switched yet).
        self.tv_input: str | None = None
        #: How many times the TV was asked for its power status.
        self.status_queries = 0
        self._bus_lock = threading.Lock()

    @property
    def sent(self) -> list[Message]:
        """The messages sent, oldest first, without their times."""
        with self._bus_lock:
            return [message for _, message in self.messages]

    @property
    def present(self) -> bool:
        """Whether a TV is on the bus."""
        return self.state is not TvState.ABSENT

    # ------------------------------------------------------------ messages from the unit

    def image_view_on(self) -> bool:
        """``<Image View On>``: the TV turns on. Returns whether it was acknowledged."""
        return self._obey(("image-view-on",), TvState.ON)

    def standby(self) -> bool:
        """``<Standby>``: the TV goes to standby. Returns whether it was acknowledged."""
        return self._obey(("standby",), TvState.STANDBY)

    def active_source(self, phys_addr: str) -> None:
        """``<Active Source>`` (broadcast): a TV that is on shows that input."""
        self._record(("active-source", phys_addr))
        if self.state is TvState.ON:
            self.tv_input = phys_addr

    def give_device_power_status(self) -> TvState:
        """``<Give Device Power Status>``: the TV's state, ``absent`` if nobody answered."""
        self._check_usable()
        with self._bus_lock:
            self.status_queries += 1
        return self.state

    # ------------------------------------------------------------ the TV itself

    def press_power(self) -> None:
        """The TV's remote control: on <-> standby."""
        self._check_usable()
        if self.state is TvState.ON:
            self._set_state(TvState.STANDBY)
        elif self.present:
            self._set_state(TvState.ON)

    def unplug(self) -> None:
        """The TV leaves the bus (unplugged, or its HDMI cable pulled)."""
        self._check_usable()
        self.tv_input = None
        self._set_state(TvState.ABSENT)

    def plug(self, state: TvState = TvState.STANDBY) -> None:
        """The TV is back on the bus, in ``state``."""
        self._check_usable()
        self._set_state(state)

    def _obey(self, message: Message, result: TvState) -> bool:
        self._record(message)
        if not self.present:
            return False
        self._set_state(result)
        return True

    def _record(self, message: Message) -> None:
        self._check_usable()
        with self._bus_lock:
            self.messages.append((time.monotonic(), message))
        log.debug("%s <- %s", self.name, " ".join(message))


class FakeCecDisplay(Display):
    """A :class:`~vaka.agent.hw.display.Display` over a :class:`FakeCecBus`, behaving like
    :class:`~vaka.agent.hw.cec.CecDisplay`: :meth:`wake` sends ``<Image View On>`` then
    ``<Active Source>`` with :attr:`phys_addr`, and a TV that does not acknowledge raises
    :class:`HardwareError` and reads as ``absent``. Its state follows the TV's, including presses
    of the remote. :meth:`plug`, :meth:`unplug` and :meth:`press_power` act on the bus.
    """

    def __init__(
        self,
        bus: FakeCecBus | None = None,
        *,
        phys_addr: str = "1.0.0.0",
        name: str | None = None,
    ) -> None:
        self.bus = bus if bus is not None else FakeCecBus()
        self.phys_addr = phys_addr
        super().__init__(self.bus.state, name=name)
        self._unsubscribe = self.bus.subscribe(self._set_state)

    async def wake(self) -> None:
        """Send ``<Image View On>`` and ``<Active Source>``."""
        self._check_usable()
        if not self.bus.image_view_on():
            self._absent()
        self.bus.active_source(self.phys_addr)
        self._set_state(TvState.ON)

    async def standby(self) -> None:
        """Send ``<Standby>``."""
        self._check_usable()
        if not self.bus.standby():
            self._absent()
        self._set_state(TvState.STANDBY)

    async def poll(self) -> TvState:
        """Ask the TV for its power status, as :meth:`CecDisplay.poll` does."""
        self._check_usable()
        self._set_state(self.bus.give_device_power_status())
        return self.state

    def refresh(self) -> TvState:
        """The TV's state, straight from the bus."""
        self._check_usable()
        self._set_state(self.bus.state)
        return self.state

    def device_changed(self, present: bool) -> None:
        """Hotplug, as :meth:`CecDisplay.device_changed`: a loss reads ``absent`` at once."""
        self._check_usable()
        self._set_state(self.bus.state if present else TvState.ABSENT)

    def press_power(self) -> None:
        """The citizen's remote control."""
        self.bus.press_power()

    def unplug(self) -> None:
        """Take the TV off the bus."""
        self.bus.unplug()

    def plug(self, state: TvState = TvState.STANDBY) -> None:
        """Put the TV back on the bus, in ``state``."""
        self.bus.plug(state)

    def _absent(self) -> None:
        self._set_state(TvState.ABSENT)
        raise HardwareError(NO_ANSWER)

    def _release(self) -> None:
        self._unsubscribe()
