"""A simulated TV that records the commands sent to it."""

from vaka.agent.hw.display import Display, TvState


class SimulatedDisplay(Display):
    """A TV that obeys at once and keeps :attr:`commands`, e.g. ``[("wake",), ("standby",)]``.

    :meth:`unplug` and :meth:`plug` simulate the TV leaving and rejoining the bus; commands sent to
    an absent TV are recorded but change nothing. :meth:`press_power` is the citizen's remote.
    """

    def __init__(self, initial: TvState = TvState.STANDBY, *, name: str | None = None) -> None:
        super().__init__(initial, name=name)
        self.commands: list[tuple[str, ...]] = []

    async def wake(self) -> None:
        """Record ``("wake",)``; the TV turns on if it is there."""
        self._command("wake", TvState.ON)

    async def standby(self) -> None:
        """Record ``("standby",)``; the TV goes to standby if it is there."""
        self._command("standby", TvState.STANDBY)

    def _command(self, name: str, result: TvState) -> None:
        self._check_usable()
        self.commands.append((name,))
        if self.state is not TvState.ABSENT:
            self._set_state(result)

    def press_power(self) -> None:
        """The remote control's power button: on <-> standby."""
        self._check_usable()
        if self.state is TvState.ON:
            self._set_state(TvState.STANDBY)
        elif self.state is not TvState.ABSENT:
            self._set_state(TvState.ON)

    def unplug(self) -> None:
        """The TV leaves the bus (unplugged or its HDMI cable pulled)."""
        self._check_usable()
        self._set_state(TvState.ABSENT)

    def plug(self, state: TvState = TvState.STANDBY) -> None:
        """The TV is back on the bus, in ``state``."""
        self._check_usable()
        self._set_state(state)
