"""The TV screen the agent drives: a real OpenCV window, and a headless one beside it.

The agent calls :meth:`Screen.show` with a state (:mod:`vaka.agent.ui.states`) whenever what the
citizen should see changes (and with every remote video frame during a call); only the newest state
is drawn, so a slow frame never queues up. Presses come back through ``on_press(button_id)``:
on the agent's event loop (``loop.call_soon_threadsafe``) when it has one, so the handler may be
plain synchronous code that starts tasks.

:class:`TvScreen` is fullscreen on the unit's X display (a kiosk session; XWayland under Wayland):
an OpenCV window with ``WINDOW_AUTOSIZE | WINDOW_GUI_NORMAL`` (no Qt toolbar), moved to (0, 0),
and set fullscreen where a window manager runs to honour it (see :data:`SETTLE_MS` for why not
otherwise). It renders at ``size``: set it to the TV's resolution. Drawing happens on the GUI
thread (:mod:`vaka.agent.ui.gui`), not the caller's.
:class:`HeadlessScreen` records what it was shown and lets tests and ``--simulate`` press buttons.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from vaka.agent.media.source import BgrImage
from vaka.agent.ui.catalog import Catalog
from vaka.agent.ui.drawing import font_path
from vaka.agent.ui.gui import GuiThread, ScreenError, display_problem
from vaka.agent.ui.layout import buttons, hit_test, render
from vaka.agent.ui.spec import BASE, Size
from vaka.agent.ui.states import ButtonId, Idle, InCall, ScreenState
from vaka.agent.ui.x11 import screen_pixels, window_manager_running

log = logging.getLogger(__name__)

PressHandler = Callable[[ButtonId], object]
"""Called with the id of each button the citizen presses."""

SETTLE_MS = 150
"""How long Qt may handle events between creating the window, moving it and checking it.

Under Xvfb with no window manager, OpenCV's Qt window sometimes stays black for good (mapped,
never painted, whatever is shown later; a known opencv-python problem): ~1 window in 15 when it
was moved and shown at once, ~1 in 10 whenever it was set fullscreen (which only a window manager
honours), ~1 in 50 when settled first and not set fullscreen. Opening it again cures it, so
without a window manager the screen reads its pixels back once after opening (:func:`_painted`)
and re-opens a black window, up to :data:`OPEN_ATTEMPTS` times."""
OPEN_ATTEMPTS = 3

HISTORY_LIMIT = 1000
"""How many states a :class:`HeadlessScreen` remembers."""

_EVENT_LBUTTONDOWN = 1  # cv2.EVENT_LBUTTONDOWN, without importing OpenCV here
_EVENT_LBUTTONUP = 4  # cv2.EVENT_LBUTTONUP


class Screen(ABC):
    """Base for the TV screen.

    An implementation **must** override :meth:`_show` (take the newest state; it must not block
    for long: it is called on the event loop) and **may** override :meth:`_close` (release the
    display; called once). It reports presses with :meth:`_deliver`.
    """

    def __init__(
        self,
        catalog: Catalog,
        on_press: PressHandler,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        size: Size = BASE,
    ) -> None:
        self.catalog = catalog
        self.size = size
        self._on_press = on_press
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None  # no loop: presses are delivered on the screen's own thread
        self._loop = loop
        self._state: ScreenState | None = None
        self._closed = False

    @property
    def state(self) -> ScreenState | None:
        """The state last asked for with :meth:`show`."""
        return self._state

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def show(self, state: ScreenState) -> None:
        """Show ``state`` from now on. Thread-safe, does not wait for the drawing."""
        if self._closed:
            raise ScreenError(f"{self!r} is closed")
        self._state = state
        self._show(state)

    def close(self) -> None:
        """Take the screen down. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._close()

    @abstractmethod
    def _show(self, state: ScreenState) -> None: ...

    def _close(self) -> None:  # noqa: B027 - optional to override
        """Release what the screen holds."""

    def _deliver(self, button: ButtonId) -> None:
        log.info("button pressed: %s", button)
        if self._loop is None:
            self._on_press(button)
            return
        try:
            self._loop.call_soon_threadsafe(self._on_press, button)
        except RuntimeError:  # the loop is closed: the agent is stopping
            log.warning("button %s pressed while the agent is stopping: ignored", button)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.catalog.language!r}, size={self.size})"


class HeadlessScreen(Screen):
    """A screen without a display, for ``--simulate`` and tests: it keeps a time-stamped history
    of the states shown and lets a test :meth:`press` their buttons."""

    def __init__(
        self,
        catalog: Catalog,
        on_press: PressHandler,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        size: Size = BASE,
    ) -> None:
        super().__init__(catalog, on_press, loop=loop, size=size)
        self.history: list[tuple[float, ScreenState]] = []
        "Every state shown, with ``time.monotonic()`` when it was."

    def _show(self, state: ScreenState) -> None:
        # A call shows a new state per video frame: keep only the newest of a run of them, so
        # that the history (and the pictures it holds) stays small.
        previous = self.history[-1] if self.history else None
        if previous is not None and isinstance(state, InCall) and isinstance(previous[1], InCall):
            self.history[-1] = (time.monotonic(), state)
            return
        if previous is not None and isinstance(previous[1], InCall):
            # The call's run ended: keep that it was shown, not its last two pictures (about
            # 1.8 MB at 640x480, which a simulated unit kept for each of its last 1000 states).
            self.history[-1] = (previous[0], InCall())
        self.history.append((time.monotonic(), state))
        if len(self.history) > HISTORY_LIMIT:
            del self.history[0]

    def press(self, button: ButtonId | str) -> None:
        """Press ``button`` on the current screen, as the citizen would (refused if it has none)."""
        if self._closed:
            raise ScreenError(f"{self!r} is closed")
        wanted = ButtonId(button)
        state = self._state
        present = [] if state is None else [b.id for b in buttons(state, self.size)]
        if wanted not in present:
            shown = "nothing" if state is None else f"the {type(state).__name__} screen"
            raise ValueError(f"there is no {wanted.value!r} button on {shown}")
        self._deliver(wanted)

    def image(self) -> BgrImage:
        """The current screen as it would be drawn (BGR)."""
        if self._state is None:
            raise ScreenError("nothing has been shown yet")
        return render(self._state, self.catalog, self.size)


class TvScreen(Screen):
    """The citizen's TV screen: a fullscreen OpenCV window on the X display.

    :meth:`start` opens it (blocking, up to ~1 s: from async code use ``asyncio.to_thread``);
    use it as a context manager to close it again.
    """

    def __init__(
        self,
        catalog: Catalog,
        on_press: PressHandler,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        size: Size = BASE,
        fullscreen: bool | None = None,
        name: str = "Vaka",
    ) -> None:
        super().__init__(catalog, on_press, loop=loop, size=size)
        self.name = name
        self.fullscreen = fullscreen
        "Ask for fullscreen: ``None`` (the default) does where a window manager runs."
        self.render_ms = 0.0
        "How long the last frame took to draw, in milliseconds."
        self.frames = 0
        "How many frames were put on the screen."
        self._gui: GuiThread | None = None
        self._lock = threading.Condition()
        self._wanted: ScreenState = Idle()
        self._wanted_seq = 0  # bumped by every show()
        self._drawn_seq = -1  # the show() last drawn (on the GUI thread)
        self._shown_seq = -1  # ... and on the screen since
        self._drawn: ScreenState | None = None
        self._clock = ""
        self._down: ButtonId | None = None
        self._image: BgrImage | None = None

    def start(self) -> Self:
        """Open the window and show the last state given (idle if none). Raises
        :class:`ScreenError` if there is no display to open it on."""
        if self._closed:
            raise ScreenError(f"{self!r} is closed")
        if self._gui is not None:
            return self
        if problem := display_problem():
            raise ScreenError(f"cannot open the TV screen: {problem}")
        path = font_path()
        if path is not None:  # spares Qt's "Cannot find font directory" warning
            os.environ.setdefault("QT_QPA_FONTDIR", str(path.parent))
        display = os.environ["DISPLAY"]
        if self.fullscreen is None:
            self.fullscreen = window_manager_running(display)
        gui = GuiThread.for_display(display)
        try:
            gui.call(self._open)
        except Exception as err:
            raise ScreenError(f"cannot open the TV screen: {err}") from err
        self._gui = gui
        log.info("TV screen open on %s at %dx%d", gui.display, *self.size)
        return self

    def __enter__(self) -> Self:
        return self.start()

    def _show(self, state: ScreenState) -> None:
        with self._lock:
            self._wanted = state
            self._wanted_seq += 1

    def wait_shown(self, timeout: float = 5.0) -> bool:
        """Wait until the state last given to :meth:`show` is on the screen (for tests)."""
        with self._lock:
            seq = self._wanted_seq
            return self._lock.wait_for(lambda: self._shown_seq >= seq or self._closed, timeout)

    def _close(self) -> None:
        gui = self._gui
        if gui is not None:
            try:
                gui.call(self._destroy, timeout=5.0)
            except TimeoutError:
                log.warning("the TV screen's window did not close in time")
        with self._lock:
            self._lock.notify_all()

    # -- on the GUI thread ------------------------------------------------------------------

    def _open(self) -> None:
        import cv2

        for attempt in range(1, OPEN_ATTEMPTS + 1):
            self._create(cv2)
            right = 1.0 if self.fullscreen else self._painted()
            if right > 0.9:
                break
            log.warning(
                "the TV screen's window shows %.0f%% of what was drawn (attempt %d): opening it "
                "again", right * 100, attempt,
            )  # fmt: skip
            cv2.destroyWindow(self.name)
            self._settle(cv2)
        GuiThread.for_display(os.environ["DISPLAY"]).add(self)

    def _create(self, cv2: Any) -> None:
        cv2.namedWindow(self.name, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        cv2.setMouseCallback(self.name, self._on_mouse)
        self._settle(cv2)
        cv2.moveWindow(self.name, 0, 0)
        if self.fullscreen:  # see SETTLE_MS
            cv2.setWindowProperty(self.name, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
            self._settle(cv2)
        self._drawn_seq = -1
        self.pump(cv2)
        self._settle(cv2)

    def _painted(self) -> float:
        """The share of the screen's pixels that are those drawn (1.0 if it cannot tell)."""
        image = self._image
        shot = screen_pixels(os.environ["DISPLAY"], *self.size)
        if image is None or shot is None or shot.shape != image.shape:
            return 1.0
        return float((shot == image).all(axis=2).mean())

    @staticmethod
    def _settle(cv2: Any) -> None:
        deadline = time.monotonic() + SETTLE_MS / 1000
        while time.monotonic() < deadline:
            cv2.waitKey(10)

    def _destroy(self) -> None:
        import cv2

        if self._gui is not None:
            self._gui.remove(self)
        try:
            cv2.destroyWindow(self.name)
            cv2.waitKey(1)
        except cv2.error as err:  # already gone (closed from outside)
            log.warning("closing the TV screen's window: %s", err)
        log.info("TV screen closed")

    def pump(self, cv2: Any) -> None:
        """Draw what is new: a new state, or the idle clock's next minute."""
        with self._lock:
            state, seq = self._wanted, self._wanted_seq
        clock = ""
        if isinstance(state, Idle) and state.now is None:
            clock = datetime.now().strftime("%Y%m%d%H%M")
        if seq == self._drawn_seq and clock == self._clock:
            return
        started = time.perf_counter()
        image = render(state, self.catalog, self.size)
        cv2.imshow(self.name, image)
        self.render_ms = (time.perf_counter() - started) * 1000
        self._drawn, self._drawn_seq, self._clock, self._image = state, seq, clock, image

    def pumped(self) -> None:
        """Qt has handled events since the last draw: it is on the screen."""
        if self._shown_seq != self._drawn_seq:
            with self._lock:
                self._shown_seq = self._drawn_seq
                self.frames += 1
                self._lock.notify_all()

    def _on_mouse(self, event: int, x: int, y: int, flags: int, param: object) -> None:
        # A press counts when the button is released on the button it went down on (a finger
        # that slides off cancels); the screen may have changed in between (video frames do).
        state = self._drawn
        if state is None:
            return
        if event == _EVENT_LBUTTONDOWN:
            self._down = hit_test(state, x, y, self.size)
        elif event == _EVENT_LBUTTONUP:
            down, self._down = self._down, None
            button = hit_test(state, x, y, self.size)
            if button is not None and button == down:
                self._deliver(button)
