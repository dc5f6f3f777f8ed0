"""A simulated shutter mechanism on gpiozero's mock pins: the servo moves it, it presses switches.

gpiozero's :class:`~gpiozero.pins.mock.MockFactory` gives pins but nothing physical behind them.
:class:`FakeMechanism` is that physical part for :class:`~vaka.agent.hw.shutter_gpio.GpioShutter`:
a thread watches the servo's mock PWM pin and, ``travel_s`` after the pulse width changes, presses
the limit switch of the position it was sent to (``drive_low()``, the switches being wired to
ground) and releases the other (``drive_high()``). Like the real one it is spring-return: without
a PWM signal it goes closed. :meth:`FakeMechanism.jam` stops it where it is.

Create it **before** the shutter on the same factory, so that the closed switch is pressed when the
shutter looks at start.
"""

import logging
import threading
import time
from enum import Enum
from types import TracebackType

from gpiozero.pins.mock import MockFactory

from vaka.agent.hw.shutter_gpio import CLOSED_PULSE_S, OPEN_PULSE_S

log = logging.getLogger(__name__)


class MechanismPosition(Enum):
    """Where the simulated shutter blade is."""

    CLOSED = "closed"
    BETWEEN = "between"
    OPEN = "open"


class FakeMechanism:
    """The simulated blade behind a servo pin and up to two limit-switch pins.

    :attr:`history` keeps ``(time.monotonic(), position)`` for the start and every change.
    Stop it with :meth:`close` (or use it as a context manager).
    """

    def __init__(
        self,
        factory: MockFactory,
        *,
        servo_pin: int,
        closed_switch_pin: int | None = None,
        open_switch_pin: int | None = None,
        closed_pulse_s: float = CLOSED_PULSE_S,
        open_pulse_s: float = OPEN_PULSE_S,
        travel_s: float = 0.05,
        poll_s: float = 0.005,
    ) -> None:
        self.travel_s = travel_s
        self.poll_s = poll_s
        self._pulses = (closed_pulse_s, open_pulse_s)
        self._servo = factory.pin(servo_pin)
        self._switch_pins = {
            MechanismPosition.CLOSED: None
            if closed_switch_pin is None
            else factory.pin(closed_switch_pin),
            MechanismPosition.OPEN: None
            if open_switch_pin is None
            else factory.pin(open_switch_pin),
        }
        self._lock = threading.Lock()
        self._jammed = False
        self._position = self._heading = MechanismPosition.CLOSED
        self._arrive_at = 0.0
        #: ``(time.monotonic(), position)``, oldest first.
        self.history: list[tuple[float, MechanismPosition]] = [
            (time.monotonic(), MechanismPosition.CLOSED)
        ]
        self._press_switches()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="fake shutter mechanism", daemon=True
        )
        self._thread.start()

    @property
    def position(self) -> MechanismPosition:
        """Where the blade is now."""
        return self._position

    @property
    def jammed(self) -> bool:
        """Whether :meth:`jam` holds the blade."""
        return self._jammed

    def commanded(self) -> MechanismPosition:
        """Where the servo pulls the blade: the nearer position, or closed without a signal."""
        frequency, duty = self._servo.frequency, float(self._servo.state or 0.0)
        if not frequency or duty <= 0:
            return MechanismPosition.CLOSED  # the spring
        pulse = duty / frequency
        closed, opened = self._pulses
        return (
            MechanismPosition.OPEN
            if abs(pulse - opened) < abs(pulse - closed)
            else MechanismPosition.CLOSED
        )

    def jam(self) -> None:
        """Hold the blade where it is, whatever the servo does."""
        with self._lock:
            self._jammed = True
        log.info("mechanism jammed at %s", self._position.value)

    def unjam(self) -> None:
        """Let the blade move again; one that was between positions needs a full travel time."""
        with self._lock:
            self._jammed = False
            self._arrive_at = time.monotonic() + self.travel_s
        log.info("mechanism free")

    def push(self, position: MechanismPosition) -> None:
        """Move the blade by hand to ``position``; unless jammed, the servo (or the spring) pulls
        it back within ``travel_s``."""
        with self._lock:
            self._move(position)
            self._arrive_at = time.monotonic() + self.travel_s
            self._press_switches()

    def close(self) -> None:
        """Stop the thread. Safe to call twice."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> "FakeMechanism":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.poll_s):
            try:
                self._step()
            except Exception:  # e.g. a device's callback raising: keep moving, say it once
                if not failing:
                    log.exception("fake shutter mechanism: a step failed")
                failing = True
            else:
                failing = False

    def _step(self) -> None:
        with self._lock:
            if not self._jammed:
                now, target = time.monotonic(), self.commanded()
                if target is not self._heading:
                    self._heading, self._arrive_at = target, now + self.travel_s
                if self._position is not self._heading:
                    if self._position is not MechanismPosition.BETWEEN:
                        self._move(MechanismPosition.BETWEEN)  # leaves its switch at once
                    elif now >= self._arrive_at:
                        self._move(self._heading)
            # Every tick: a pull-up set by an input device made after us must not undo a press.
            self._press_switches()

    def _move(self, position: MechanismPosition) -> None:
        if position is not self._position:
            self._position = position
            self.history.append((time.monotonic(), position))
            log.debug("mechanism %s", position.value)

    def _press_switches(self) -> None:
        for position, pin in self._switch_pins.items():
            if pin is None:
                continue
            if self._position is position:
                pin.drive_low()
            else:
                pin.drive_high()
