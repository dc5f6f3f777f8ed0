"""A simulated shutter with a travel time and a jam that tests and ``--simulate`` drive."""

import asyncio

from vaka.agent.hw.base import HardwareError
from vaka.agent.hw.shutter import Shutter, ShutterFault, ShutterState


class SimulatedShutter(Shutter):
    """A shutter that takes ``travel_s`` seconds to move and can be jammed.

    The last command wins: :meth:`close` during an opening turns the shutter round and the pending
    :meth:`open` raises :class:`HardwareError`; a second command in the same direction waits for
    the first. :meth:`jam` puts it in ``fault`` at once and, until :meth:`unjam`, every movement
    raises :class:`ShutterFault`. Drive it from the event loop's thread.
    """

    def __init__(self, travel_s: float = 0.05, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.travel_s = travel_s
        self.jammed = False
        self._arrival: asyncio.Event | None = None  # set when the current movement ends

    async def open(self) -> None:
        """Move to ``open`` through ``opening``."""
        self._check_usable()
        await self._move(ShutterState.OPENING, ShutterState.OPEN)

    async def close(self) -> None:
        """Move to ``closed`` through ``closing``; nothing to do when already closed or released."""
        if self.released or self.state is ShutterState.CLOSED:
            return
        await self._move(ShutterState.CLOSING, ShutterState.CLOSED)

    def jam(self) -> None:
        """Jam the shutter where it is: the state becomes ``fault``."""
        self.jammed = True
        self._end_movement()
        self._set_state(ShutterState.FAULT)

    def unjam(self) -> None:
        """Free the mechanism; the state stays ``fault`` until the next movement succeeds."""
        self.jammed = False

    def _end_movement(self) -> None:
        if self._arrival is not None:
            self._arrival.set()
            self._arrival = None

    async def _move(self, moving: ShutterState, target: ShutterState) -> None:
        if self.jammed:
            raise ShutterFault(f"{self.name} is jammed and cannot reach {target.value}")
        if self.state is target:
            return
        if self.state is moving and self._arrival is not None:  # the same movement is under way
            await self._arrival.wait()
        else:
            self._end_movement()  # turn round: a movement the other way loses
            arrival = self._arrival = asyncio.Event()
            self._set_state(moving)
            try:
                await asyncio.sleep(self.travel_s)
                if self._arrival is arrival:
                    self._set_state(target)
            finally:  # also when cancelled: nobody waits for ever
                if self._arrival is arrival:
                    self._end_movement()
        if self.state is ShutterState.FAULT:
            raise ShutterFault(f"{self.name} jammed before reaching {target.value}")
        if self.state is not target:
            raise HardwareError(f"{self.name}: {moving.value} was overridden by a later command")

    def _release(self) -> None:
        # Like the real mechanism: without power the spring pulls the shutter closed.
        if not self.jammed:
            self._end_movement()
            self._set_state(ShutterState.CLOSED)
