"""The base of every hardware device: an explicit state machine that others can watch.

A device's state is an :class:`~enum.Enum` member, changed only through
:meth:`StateSource._set_state`, which logs ``old -> new``, appends to a time-stamped
:attr:`~StateSource.history` and calls the subscribed listeners only on a real change.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import Generic, TypeVar

from vaka.errors import DeviceReleased, HardwareError

__all__ = ["DeviceReleased", "HardwareError", "StateSource"]

log = logging.getLogger(__name__)

S = TypeVar("S", bound=Enum)

#: How many state changes a source remembers (older entries are dropped).
HISTORY_LIMIT = 1000


class StateSource(Generic[S]):
    """A device whose state is one member of the enum ``S``.

    An implementation **must** pass its initial state to ``__init__`` and change state only through
    :meth:`_set_state`. It **may** override :meth:`refresh` to poll the hardware (the health sampler
    calls it before reading :attr:`state`) and :meth:`_release` to free what it holds; public
    methods that act on the device should call :meth:`_check_usable` first.

    :meth:`_set_state` may be called from any thread (GPIO and udev callbacks run on their own);
    listeners are then called on that thread, so a listener that touches an event loop must use
    ``loop.call_soon_threadsafe``.
    """

    #: What the device is, for log lines ("camera", "shutter", ...).
    kind = "device"

    def __init__(self, initial: S, *, name: str | None = None) -> None:
        self.name = name or self.kind
        self._state = initial
        self._lock = threading.Lock()
        self._listeners: list[Callable[[S], None]] = []
        self._released = False
        #: ``(time.monotonic(), state)`` for the initial state and every change since, oldest first.
        self.history: list[tuple[float, S]] = [(time.monotonic(), initial)]

    @property
    def state(self) -> S:
        """The current state."""
        return self._state

    @property
    def released(self) -> bool:
        """Whether :meth:`release` has been called."""
        return self._released

    @property
    def listener_count(self) -> int:
        """How many listeners are subscribed."""
        return len(self._listeners)

    def subscribe(self, callback: Callable[[S], None]) -> Callable[[], None]:
        """Call ``callback(new_state)`` on every change; returns a function that unsubscribes.

        The returned function is safe to call more than once, and after :meth:`release`.
        """
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return unsubscribe

    def refresh(self) -> S:
        """Bring :attr:`state` up to date with the hardware and return it.

        The default returns the current state: for devices that report changes by themselves.
        """
        self._check_usable()
        return self._state

    def release(self) -> None:
        """Free the device and drop all listeners. Safe to call twice."""
        with self._lock:
            if self._released:
                return
            self._released = True
        try:
            self._release()
        except Exception:
            log.exception("%s: release failed", self.name)
        finally:
            with self._lock:
                self._listeners.clear()
        log.debug("%s released", self.name)

    def _release(self) -> None:
        """Free what the implementation holds; called once by :meth:`release`."""

    def _check_usable(self) -> None:
        """Raise :class:`DeviceReleased` if the device has been released."""
        if self._released:
            raise DeviceReleased(f"{self.name} has been released and cannot be used")

    def _set_state(self, new: S) -> None:
        """Change state: log, record in :attr:`history` and notify listeners, only on a change."""
        with self._lock:
            old = self._state
            if old is new:
                return
            self._state = new
            self.history.append((time.monotonic(), new))
            if len(self.history) > HISTORY_LIMIT:
                del self.history[: len(self.history) - HISTORY_LIMIT]
            listeners = list(self._listeners)
        log.info("%s %s -> %s", self.name, old.value, new.value)
        for listener in listeners:
            try:
                listener(new)
            except Exception:
                log.exception("%s: state listener failed", self.name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self._state.value}>"
