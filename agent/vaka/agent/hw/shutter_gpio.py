"""The privacy shutter on GPIO: a hobby servo moves it, limit switches confirm where it is.

**The mechanism must be spring-return closed** (DESIGN rule 2): without a control signal (power
loss, a crashed or stopped agent, a released pin) a spring pulls the shutter in front of the lens.
This code relies on that: :meth:`GpioShutter.release` drives it closed and then lets go of the
servo, and by default the servo is also let go of whenever the shutter is confirmed closed (the
spring holds it; a detached servo does not hum in a bedroom at night).

Limit switches are wired from their GPIO pin to ground and read with the internal pull-up, so a
switch is *active* while the shutter presses it. Either switch may be left out: without one, a
movement is taken as done after ``travel_s``.
"""

import asyncio
import contextlib
import logging
import threading
import time

from gpiozero import DigitalInputDevice, Servo
from gpiozero.pins import Factory

from vaka.agent.hw.base import DeviceReleased, HardwareError
from vaka.agent.hw.gpio import close_quietly, gpio_device
from vaka.agent.hw.shutter import Shutter, ShutterFault, ShutterState

log = logging.getLogger(__name__)

#: Servo pulse widths of the two positions unless told otherwise (a standard 1-2 ms servo).
CLOSED_PULSE_S = 0.001
OPEN_PULSE_S = 0.002
#: How often a waiting movement looks at the switches besides being woken by their edges.
POLL_S = 0.02

_MOVING = {ShutterState.OPEN: ShutterState.OPENING, ShutterState.CLOSED: ShutterState.CLOSING}
_OTHER = {ShutterState.OPEN: ShutterState.CLOSED, ShutterState.CLOSED: ShutterState.OPEN}


class GpioShutter(Shutter):
    """A servo-driven shutter with optional ``closed`` and ``open`` limit switches.

    The constructor drives the servo to closed and, with a closed switch, waits up to
    ``timeout_s`` for it to confirm (blocking: build it before the event loop runs or in a
    thread); if it does not, the shutter starts in ``fault``. A movement goes
    ``opening -> open`` or ``closing -> closed`` once the target's switch confirms within
    ``timeout_s``, and to ``fault`` (raising :class:`ShutterFault` that names the switch) when it
    does not, or when the other switch still reports its position. The last command wins; two
    commands in the same direction share one movement; a caller that is cancelled does not stop
    the movement. GPIO calls and waits run in threads, off the event loop.

    A ``pin_factory`` passed here wins over gpiozero's default (see :mod:`vaka.agent.hw.gpio`).
    """

    def __init__(
        self,
        servo_pin: int,
        *,
        closed_switch_pin: int | None = None,
        open_switch_pin: int | None = None,
        closed_pulse_s: float = CLOSED_PULSE_S,
        open_pulse_s: float = OPEN_PULSE_S,
        travel_s: float = 0.5,
        timeout_s: float = 2.0,
        detach_when_closed: bool = True,
        pin_factory: Factory | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if closed_pulse_s == open_pulse_s:
            raise ValueError("closed_pulse_s and open_pulse_s must differ")
        if travel_s < 0 or timeout_s <= 0:
            raise ValueError(f"need travel_s >= 0 and timeout_s > 0, got {travel_s}, {timeout_s}")
        self.servo_pin = servo_pin
        self.travel_s = travel_s
        self.timeout_s = timeout_s
        self.detach_when_closed = detach_when_closed
        #: Why the shutter is in ``fault`` (``None`` when it is not).
        self.fault_reason: str | None = None
        self._values = {
            ShutterState.CLOSED: -1.0 if closed_pulse_s < open_pulse_s else 1.0,
            ShutterState.OPEN: 1.0 if closed_pulse_s < open_pulse_s else -1.0,
        }
        # Guards the generation, the devices and _moving; woken by switch edges and new commands.
        self._cond = threading.Condition()
        self._generation = 0
        self._moving = False
        self._io_closed = False
        self._movement: tuple[ShutterState, asyncio.Task[None]] | None = None
        self._switches: dict[ShutterState, tuple[int, DigitalInputDevice]] = {}
        self._servo: Servo = self._open_devices(
            servo_pin,
            (closed_pulse_s, open_pulse_s),
            closed_switch_pin,
            open_switch_pin,
            pin_factory,
        )
        self._confirm_closed_at_start()

    def _open_devices(
        self,
        servo_pin: int,
        pulses_s: tuple[float, float],
        closed_switch_pin: int | None,
        open_switch_pin: int | None,
        pin_factory: Factory | None,
    ) -> Servo:
        """The servo (driven closed at once) and the limit switches; all released on failure."""
        servo: Servo | None = None
        try:
            servo = gpio_device(
                f"{self.name} servo on GPIO{servo_pin}",
                lambda: Servo(
                    servo_pin,
                    initial_value=self._values[ShutterState.CLOSED],
                    min_pulse_width=min(pulses_s),
                    max_pulse_width=max(pulses_s),
                    pin_factory=pin_factory,
                ),
            )
            for position, pin in (
                (ShutterState.CLOSED, closed_switch_pin),
                (ShutterState.OPEN, open_switch_pin),
            ):
                if pin is not None:
                    self._switches[position] = (pin, self._make_switch(position, pin, pin_factory))
        except BaseException:
            close_quietly(servo, *(switch for _, switch in self._switches.values()))
            raise
        return servo

    def _confirm_closed_at_start(self) -> None:
        """Wait for the closed switch (if there is one): closed, or ``fault`` if it never comes."""
        if ShutterState.CLOSED in self._switches:
            failure = self._wait_for(ShutterState.CLOSED, 0, self.timeout_s)
            if failure:
                self._fault(f"at start: {failure}")
                return
        self._let_go(0)
        self._arrived(ShutterState.CLOSED, 0)

    def _make_switch(
        self, position: ShutterState, pin: int, factory: Factory | None
    ) -> DigitalInputDevice:
        switch = gpio_device(
            f"{self.name} {position.value} switch on GPIO{pin}",
            lambda: DigitalInputDevice(pin, pull_up=True, pin_factory=factory),
        )
        switch.when_activated = self._on_switch
        switch.when_deactivated = self._on_switch
        return switch

    def _on_switch(self) -> None:
        """A switch changed (on gpiozero's thread): wake whoever waits for one."""
        with self._cond:
            self._cond.notify_all()

    def _switch_name(self, position: ShutterState) -> str:
        pin, _ = self._switches[position]
        return f"{position.value} switch (GPIO{pin})"

    def _active(self, position: ShutterState) -> bool | None:
        """Whether ``position``'s switch is pressed; ``None`` without one. Call under the lock."""
        switch = self._switches.get(position)
        return None if switch is None else bool(switch[1].is_active)

    # ------------------------------------------------------------ commands

    async def open(self) -> None:
        """Open the shutter; returns once it is open, raises :class:`ShutterFault` if it is not."""
        self._check_usable()
        await self._go(ShutterState.OPEN)

    async def close(self) -> None:
        """Close the shutter; does nothing when it is closed already or released."""
        if self.released:
            return
        await self._go(ShutterState.CLOSED)

    async def _go(self, target: ShutterState) -> None:
        current = self._movement
        if current is not None and not current[1].done():
            task = current[1] if current[0] is target else self._start(target)
        elif self.state is target:
            return
        else:
            task = self._start(target)
        await asyncio.shield(task)

    def _start(self, target: ShutterState) -> asyncio.Task[None]:
        with self._cond:
            self._generation += 1
            generation = self._generation
            self._moving = True
            self._cond.notify_all()  # a movement the other way stops waiting: it lost
            self._set_state(_MOVING[target])
        task = asyncio.get_running_loop().create_task(
            self._travel(target, generation), name=f"{self.name} {_MOVING[target].value}"
        )
        task.add_done_callback(_retrieve)
        self._movement = (target, task)
        return task

    async def _travel(self, target: ShutterState, generation: int) -> None:
        failure: str | None
        try:
            await asyncio.to_thread(self._command, target, generation)
            failure = await asyncio.to_thread(self._wait_for, target, generation, self.timeout_s)
            if not failure and target is ShutterState.CLOSED:
                await asyncio.to_thread(self._let_go, generation)
        except (
            Exception
        ) as err:  # whatever the backend raised, the shutter is not where it should be
            failure = f"servo failed: {str(err) or type(err).__name__}"
        # State changes happen here, on the loop, so that listeners normally run on it.
        if failure and self._fault(failure, generation):
            raise ShutterFault(f"{self.name}: {failure}")
        if failure or not self._arrived(target, generation):
            moving = _MOVING[target].value
            raise HardwareError(f"{self.name}: {moving} was overridden by a later command")

    def _command(self, target: ShutterState, generation: int) -> None:
        """Set the servo (blocking), unless a later command came first."""
        with self._cond:
            if self._io_closed:
                raise DeviceReleased(f"{self.name} has been released and cannot be used")
            if generation == self._generation:
                self._servo.value = self._values[target]

    def _wait_for(self, target: ShutterState, generation: int, timeout_s: float) -> str | None:
        """Block until ``target`` is confirmed; ``None`` or why not. Also ends on a new command."""
        has_switch = target in self._switches
        deadline = time.monotonic() + (timeout_s if has_switch else self.travel_s)
        with self._cond:
            while generation == self._generation and not self._io_closed:
                if self._active(target):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, POLL_S))
            if generation != self._generation or self._io_closed:
                return None  # the caller sees the new generation
            return self._arrival_problem(target, timeout_s)

    def _arrival_problem(self, target: ShutterState, timeout_s: float) -> str | None:
        other = _OTHER[target]
        arrived, other_active = self._active(target), self._active(other)
        if arrived is False:
            problem = f"{self._switch_name(target)} did not confirm {target.value} within "
            problem += f"{timeout_s:g} s"
            if other_active:
                problem += f"; the {self._switch_name(other)} still reports {other.value}"
            return problem
        if other_active and arrived is None:
            return (
                f"{self._switch_name(other)} still reports {other.value} after {self.travel_s:g} s:"
                " the shutter did not move"
            )
        if other_active:
            return "both limit switches report at once: check the switches and their wiring"
        return None

    def _let_go(self, generation: int) -> None:
        """Detach the servo once closed, if so configured (blocking): the spring holds it."""
        with self._cond:
            if generation == self._generation and self.detach_when_closed and not self._io_closed:
                self._servo.detach()

    def _arrived(self, target: ShutterState, generation: int) -> bool:
        """Record the arrival, unless a later command came first."""
        with self._cond:
            if generation != self._generation:
                return False
            self._moving = False
            self.fault_reason = None
            self._set_state(target)
            return True

    def _fault(self, reason: str, generation: int | None = None) -> bool:
        """Go to ``fault`` for ``reason``, unless a later command than ``generation`` came."""
        with self._cond:
            if generation is not None and generation != self._generation:
                return False
            self._moving = False
            self.fault_reason = reason
            log.error("%s: %s", self.name, reason)
            self._set_state(ShutterState.FAULT)
            return True

    # ------------------------------------------------------------ health and release

    def refresh(self) -> ShutterState:
        """Check, when at rest, that the switches still confirm the state (blocking).

        A shutter pushed by hand, or a switch that fails, turns ``open``/``closed`` into
        ``fault``; the next successful movement clears it.
        """
        self._check_usable()
        with self._cond:
            state = self.state
            if self._moving or self._io_closed or state not in _OTHER:
                return state
            problem = None
            if self._active(state) is False:
                problem = f"{self._switch_name(state)} no longer confirms {state.value}"
            elif self._active(_OTHER[state]):
                problem = f"{self._switch_name(_OTHER[state])} reports {_OTHER[state].value}"
            if problem is not None:
                self._fault(problem)
        return self.state

    def _release(self) -> None:
        """Drive closed and wait for it (blocking, up to ``timeout_s``), then let go of the pins.

        Await :meth:`close` first where a loop runs; this is the last line of defence.
        """
        with self._cond:
            self._generation += 1
            generation = self._generation
            self._moving = False
            self._cond.notify_all()  # a pending movement stops and reports it was overridden
        if self.state is not ShutterState.CLOSED:
            self._set_state(ShutterState.CLOSING)
            try:
                self._command(ShutterState.CLOSED, generation)
                failure = self._wait_for(ShutterState.CLOSED, generation, self.timeout_s)
            except Exception as err:
                failure = f"servo failed: {str(err) or type(err).__name__}"
            if failure:
                self._fault(f"{failure}; released anyway, the spring must close it")
            else:
                self._arrived(ShutterState.CLOSED, generation)
        with self._cond:
            self._io_closed = True
            self._cond.notify_all()
        # Outside the lock: closing a pin may wait for gpiozero's callback thread.
        close_quietly(self._servo, *(switch for _, switch in self._switches.values()))


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a movement's outcome as seen: callers get it, or it was logged as a fault."""
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.exception()
