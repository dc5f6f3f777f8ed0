"""OpenCV's GUI thread: one per process, for as long as the process lives.

The ``opencv-python`` wheel's GUI is Qt. Qt must be driven from one thread only, and it stays
bound to that thread and to the X display it first connected to: a window opened later from
another thread hangs. So every OpenCV GUI call of Vaka goes through :class:`GuiThread`, a daemon
thread started on first use that runs queued calls, lets each open window do its work
(:meth:`Pumped.pump`) and then lets Qt process events in ``cv2.waitKey``. With no window open it
sleeps on its queue and leaves Qt alone.

Qt *aborts the process* when it cannot connect to the display, so :func:`display_problem` checks
the X server first. The wheel ships only Qt's ``xcb`` platform: on Wayland it needs XWayland.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, ClassVar, Protocol, TypeVar

from vaka.errors import HardwareError

log = logging.getLogger(__name__)

T = TypeVar("T")

POLL_MS = 15
"""How long each ``cv2.waitKey`` lets Qt process events: the loop's period with a window open."""


class ScreenError(HardwareError, RuntimeError):
    """The TV screen could not be opened or used."""


def display_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Why an X client could not connect to ``$DISPLAY`` now, or ``None`` if it can."""
    env = os.environ if environ is None else environ
    display = env.get("DISPLAY", "")
    if not display:
        return "DISPLAY is not set: the TV screen needs an X server (XWayland under Wayland)"
    host, _, screen = display.rpartition(":")
    number = screen.split(".")[0]
    if not number.isdigit():
        return f"DISPLAY={display!r} is not an X display name"
    try:
        if host in ("", "unix"):
            path = f"/tmp/.X11-unix/X{number}"  # noqa: S108 - where X servers put their socket
            for address in (path, "\0" + path):  # the file, then Linux's abstract socket
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(1.0)
                    try:
                        sock.connect(address)
                        return None
                    except OSError as err:
                        problem = err
            raise problem
        with socket.create_connection((host, 6000 + int(number)), timeout=1.0):
            return None
    except OSError as err:
        return f"cannot connect to the X display {display}: {err}"


class Pumped(Protocol):
    """A window the GUI thread looks after between event rounds."""

    def pump(self, cv2: Any) -> None:
        """Do this window's work (draw what is new); runs on the GUI thread before events."""

    def pumped(self) -> None:
        """Qt has processed events since :meth:`pump`: what was drawn is on the screen."""


class GuiThread:
    """The process's one OpenCV GUI thread. Get it with :meth:`for_display`."""

    _instance: ClassVar[GuiThread | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, display: str) -> None:
        self.display = display
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._windows: list[Pumped] = []
        self._thread = threading.Thread(target=self._run, name="vaka-tv-gui", daemon=True)
        self._thread.start()

    @classmethod
    def for_display(cls, display: str) -> GuiThread:
        """The GUI thread, started on first use; refused if Qt is bound to another display."""
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls(display)
            elif cls._instance.display != display:
                raise ScreenError(
                    f"OpenCV's GUI is bound to the display {cls._instance.display} for the life "
                    f"of this process and cannot open a window on {display}"
                )
            return cls._instance

    def on_thread(self) -> bool:
        """Whether the caller is the GUI thread."""
        return threading.current_thread() is self._thread

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the GUI thread and return its result (or raise its exception)."""
        if self.on_thread():
            return fn()
        future: Future[T] = Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as err:  # handed to the caller
                    future.set_exception(err)

        self._calls.put(run)
        return future.result(timeout)

    def add(self, window: Pumped) -> None:
        """Start pumping ``window`` (call on the GUI thread)."""
        self._windows.append(window)

    def remove(self, window: Pumped) -> None:
        """Stop pumping ``window`` (call on the GUI thread)."""
        if window in self._windows:
            self._windows.remove(window)

    def _run(self) -> None:
        import cv2

        while True:
            try:
                # Sleep on the queue while no window is open; otherwise just take what is there.
                call = self._calls.get(block=not self._windows)
                call()
                continue
            except queue.Empty:
                pass
            windows = list(self._windows)
            for window in windows:
                try:
                    window.pump(cv2)
                except Exception:
                    log.exception("the TV screen failed to draw")
            cv2.waitKey(POLL_MS)
            for window in windows:
                window.pumped()
