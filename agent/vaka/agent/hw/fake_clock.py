"""A clock whose synchronisation a test sets: the simulated units' clock.

A simulated unit reports a synchronised clock whatever the machine it runs on says (a container
often has no time service of its own); a test drives the loss and return of network time::

    clock = FakeClock()
    clock.set_synchronised(False)
    assert [state for _, state in clock.history] == [True, False]
"""

import threading
import time

from vaka.agent.hw.clock import Clock


class FakeClock(Clock):
    """Synchronised or not as set; :attr:`history` holds ``(time.monotonic(), state)`` of every
    change, the initial state first."""

    def __init__(self, synchronised: bool = True) -> None:
        self._synchronised = synchronised
        self._lock = threading.Lock()
        self.history: list[tuple[float, bool]] = [(time.monotonic(), synchronised)]

    def synchronised(self) -> bool:
        with self._lock:
            return self._synchronised

    def set_synchronised(self, synchronised: bool) -> None:
        """Gain (``True``) or lose network time."""
        with self._lock:
            if synchronised != self._synchronised:
                self._synchronised = synchronised
                self.history.append((time.monotonic(), synchronised))
