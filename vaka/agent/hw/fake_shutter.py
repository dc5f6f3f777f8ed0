"""A simulated shutter with a travel time and a jam that tests and ``--simulate`` drive."""

import asyncio

from vaka.agent.hw.base import HardwareError
from vaka.agent.hw.shutter import Shutter, ShutterFault, ShutterState


class SimulatedShutter(Shutter):
    """A shutter that takes ``travel_s`` seconds to move and can be jammed.

    The last command wins: :meth:`close` during an opening turns the shutter round and the
    pending :meth:`open` raises :class:`HardwareError`; a second command in the same direction
    waits for the first. :meth:`jam` puts it in ``fault`` at once;
    until :meth:`unjam`, every movement raises :class:`ShutterFault`.
    """

    def __init__(self, travel_s: float = 0.05, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.travel_s = travel_s
        self.jammed = False
        self._movement = 0

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
        self._movement += 1
        self._set_state(ShutterState.FAULT)

    def unjam(self) -> None:
        """Free the mechanism; the state stays ``fault`` until the next movement succeeds."""
        self.jammed = False

    async def _move(self, moving: ShutterState, target: ShutterState) -> None:
        if self.jammed:
            raise ShutterFault(f"{self.name} is jammed and cannot reach {target.value}")
        if self.state is target:
            return
        if self.state is moving:  # the same movement is under way: wait for it to finish
            while self.state is moving:
                await asyncio.sleep(self.travel_s / 10 or 0.001)
            if self.state is ShutterState.FAULT:
                raise ShutterFault(f"{self.name} jammed before reaching {target.value}")
            if self.state is not target:
                raise HardwareError(
                    f"{self.name}: {moving.value} was overridden by a later command"
                )
            return
        self._movement += 1
        movement = self._movement
        self._set_state(moving)
        await asyncio.sleep(self.travel_s)
        if self.jammed:
            raise ShutterFault(f"{self.name} jammed before reaching {target.value}")
        if movement != self._movement:
            raise HardwareError(f"{self.name}: {moving.value} was overridden by a later command")
        self._set_state(target)

    def _release(self) -> None:
        # Like the real mechanism, released power means the spring pulls the shutter closed.
        if not self.jammed:
            self._movement += 1
            self._set_state(ShutterState.CLOSED)
