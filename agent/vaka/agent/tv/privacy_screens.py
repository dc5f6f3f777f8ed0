"""The TV's privacy screens: the citizen's privacy mode and the viewing log.

From the idle screen the citizen presses "Visitors or away" and then "I have visitors" or "I am
away": the camera is off for ``[privacy] duration_min`` (:class:`~vaka.agent.privacy_mode.
PrivacyMode`), and the TV says so until it ends ("You have visitors. The camera is off until
23:40.") with a button to turn the camera back on; the button to the staff stays. "Who looked
in?" fetches the viewing log from central (:class:`~vaka.agent.tv.viewing_log.ViewingLogClient`)
and lists it ("Night staff, 23:10, 20 s") until the citizen closes it; each morning at
``[tv] viewing_log_morning`` the TV shows it by itself for ``[tv] viewing_log_show_s``.

The TV controller asks :meth:`PrivacyScreens.due` what to show when nothing more important is
going on (a call, a message, trouble) and passes these screens' presses to :meth:`press`.
"""

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from vaka.agent.config import TvSection
from vaka.agent.privacy_mode import Mode, PrivacyMode
from vaka.agent.tv.viewing_log import ViewingLogClient
from vaka.agent.ui import (
    ButtonId,
    PrivacyChoice,
    PrivacyOn,
    ScreenState,
    StaffReach,
    ViewingLogShown,
)

log = logging.getLogger(__name__)

#: The buttons these screens answer.
PRIVACY_BUTTONS: frozenset[ButtonId] = frozenset(
    {
        ButtonId.PRIVACY,
        ButtonId.PRIVACY_VISITORS,
        ButtonId.PRIVACY_AWAY,
        ButtonId.PRIVACY_END,
        ButtonId.VIEWING_LOG,
        ButtonId.BACK,
    }
)
#: How long the choice waits for the citizen before the idle screen comes back.
CHOICE_TIMEOUT_S = 60.0
#: How long the viewing log stays up when the citizen asked for it and does not close it.
ASKED_LOG_S = 300.0


class Redrawn(Protocol):
    """What the screens need of the TV controller: a redraw, and waking the TV set."""

    def refresh(self) -> None:
        """Show what is due now."""

    #: unix time now (a test freezes it to see the screen at a given hour)
    clock: Callable[[], float]

    async def _wake_tv(self) -> None:
        """Switch the TV set on (HDMI-CEC), if the unit can."""


def _hhmm(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))


class PrivacyScreens:
    """What the privacy screens show, and what their buttons do."""

    #: the buttons :meth:`press` answers
    BUTTONS = PRIVACY_BUTTONS

    def __init__(
        self,
        privacy: PrivacyMode,
        viewing_log: ViewingLogClient | None,
        refresh: Callable[[], None],
        wake: Callable[[], Awaitable[None]],
        settings: TvSection,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.privacy = privacy
        self.viewing_log = viewing_log
        self.refresh = refresh
        self.wake = wake
        #: unix time now: the TV's clock
        self.clock = clock
        self.morning = settings.viewing_log_morning
        self.morning_show_s = settings.viewing_log_show_s
        #: the choice "I have visitors" / "I am away" is on screen
        self.choosing = False
        #: the viewing log on screen (``entries`` ``None`` while it is fetched)
        self.log_shown: ViewingLogShown | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._screen_task: asyncio.Task[None] | None = None
        self._unsubscribe = privacy.subscribe(lambda _s: self.refresh())

    @classmethod
    def of(
        cls,
        privacy: PrivacyMode | None,
        viewing_log: ViewingLogClient | None,
        tv: "Redrawn",
        settings: TvSection,
    ) -> "PrivacyScreens | None":
        """The screens of ``privacy`` on ``tv`` (the controller); ``None`` without a mode."""
        if privacy is None:
            return None
        return cls(privacy, viewing_log, tv.refresh, tv._wake_tv, settings, lambda: tv.clock())

    def start(self) -> Callable[[], None]:
        """Start the morning showing of the viewing log (on the agent's loop); returns
        :meth:`close`."""
        if self.morning is not None and self.viewing_log is not None:
            self._spawn(self._mornings(self.morning))
        return self.close

    def close(self) -> None:
        """Stop every timer."""
        self._unsubscribe()
        for task in list(self._tasks):
            task.cancel()

    def due(self, reach: StaffReach) -> ScreenState | None:
        """The privacy screen to show now, or ``None`` (the idle screen with its buttons)."""
        if self.log_shown is not None:
            return self.log_shown
        if self.choosing:
            return PrivacyChoice(round(self.privacy.duration_min))
        state = self.privacy.state
        if state is not None:
            return PrivacyOn(state.mode, _hhmm(state.until), reach)
        return None

    def press(self, button: ButtonId) -> None:
        """A press on one of :attr:`BUTTONS`."""
        match button:
            case ButtonId.PRIVACY:
                self.choosing = True
                self._on_screen(self._back_later(CHOICE_TIMEOUT_S))
            case ButtonId.PRIVACY_VISITORS:
                self._choose("visitors")
            case ButtonId.PRIVACY_AWAY:
                self._choose("away")
            case ButtonId.PRIVACY_END:
                self._spawn(self.privacy.end("ended by the citizen"))
            case ButtonId.VIEWING_LOG:
                self._on_screen(self.show_log(ASKED_LOG_S))
            case ButtonId.BACK:
                self._back()
        self.refresh()

    async def show_log(self, for_s: float) -> None:
        """Fetch the viewing log from central and show it for ``for_s`` (or until closed)."""
        self.log_shown = ViewingLogShown(None)
        self.refresh()
        answer = await self.viewing_log.fetch() if self.viewing_log is not None else None
        if self.log_shown is None:
            return  # closed while it was fetched
        if answer is None:
            self.log_shown = ViewingLogShown(None, failed=True)
        else:
            lines = tuple((e.role, _hhmm(e.at), e.seconds) for e in answer.entries)
            self.log_shown = ViewingLogShown(lines)
        self.refresh()
        await asyncio.sleep(for_s)
        self.log_shown = None
        self.refresh()

    def _choose(self, mode: Mode) -> None:
        self.choosing = False
        self._cancel_screen()
        self._spawn(self.privacy.start(mode))

    def _back(self) -> None:
        self.choosing = False
        self.log_shown = None
        self._cancel_screen()

    async def _back_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self._back()
        self.refresh()

    async def _mornings(self, at: str) -> None:
        """Each day in the minute ``at`` (local time, on the TV's clock, looked at every second
        so that a clock stepped by NTP or frozen by a test is followed): wake the TV and show
        the viewing log briefly, once a day."""
        shown_on: dt.date | None = None
        while True:
            await asyncio.sleep(1.0)
            now = dt.datetime.fromtimestamp(self.clock())
            if now.strftime("%H:%M") != at or now.date() == shown_on:
                continue
            shown_on = now.date()
            log.info("showing the viewing log of the night")
            await self.wake()
            self._on_screen(self.show_log(self.morning_show_s))

    def _on_screen(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as the one task that owns what these screens show."""
        self._cancel_screen()
        self._screen_task = self._spawn(coro)

    def _cancel_screen(self) -> None:
        task, self._screen_task = self._screen_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
