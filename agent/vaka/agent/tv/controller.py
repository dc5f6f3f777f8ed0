"""The TV unit's controller: decides what the citizen's TV shows and what their presses do.

It sits between the call machinery (it is the :class:`~vaka.agent.call.manager.CallManager`'s
:class:`~vaka.agent.call.observer.CallObserver`, and it reads the unit's call state,
:class:`~vaka.agent.call.state.UnitCall`), the screen (:mod:`vaka.agent.ui`), the TV set (woken
and put back to standby over HDMI-CEC by a :class:`~vaka.agent.hw.cec.StandbyTimer`), the
messages from the staff (a :class:`~vaka.agent.tv.shown_message.MessageBoard`) and the
citizen's button to the night staff (:class:`~vaka.agent.tv.staff_button.StaffButton`).

What is shown, most important first: a call (incoming, in progress, or the citizen calling the
night staff), a message waiting for its acknowledgement, trouble that keeps a call from being
made or taken (no connection, no camera), a notice after a citizen call nobody could take, and
otherwise the idle screen with the clock and the button to the staff: "call the night staff" in
the care provider's night hours, "call the staff" (or the provider's day number) by day
(:class:`~vaka.agent.tv.staff_hours.StaffHours`), :mod:`~vaka.agent.tv.privacy_screens`, and
the People screen (:mod:`~vaka.agent.tv.people`: the citizen calls one of their contacts).

Everything runs on the agent's event loop; the screen delivers presses there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from vaka.agent.call.observer import CallObserver
from vaka.agent.call.request import CitizenRequest
from vaka.agent.call.state import CallPhase, UnitCall
from vaka.agent.hw.cec import StandbyTimer
from vaka.agent.hw.hardware import Hardware
from vaka.agent.link import UnitLink
from vaka.agent.media.settings import MediaSettings
from vaka.agent.tv.call_media import CallMedia, report_first_picture, self_view
from vaka.agent.tv.incoming import IncomingCall
from vaka.agent.tv.people import PeopleScreen
from vaka.agent.tv.privacy_screens import PrivacyScreens
from vaka.agent.tv.quiet import DO_NOT_DISTURB, DoNotDisturb
from vaka.agent.tv.shown_message import MessageBoard, ShownMessage
from vaka.agent.tv.staff_button import StaffButton
from vaka.agent.tv.staff_hours import StaffHours
from vaka.agent.tv.trouble import Troubles
from vaka.agent.ui import (
    ButtonId,
    Calling,
    Catalog,
    HeadlessScreen,
    Idle,
    InCall,
    Message,
    Screen,
    ScreenState,
    Trouble,
    TvScreen,
)
from vaka.errors import HardwareError
from vaka.provisioning.bundles import AutoAnswerRule
from vaka.provisioning.tickets import TicketClaims

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack

    from vaka.agent.call.session import CallSession
    from vaka.agent.config import TvSection
    from vaka.agent.privacy_mode import PrivacyMode
    from vaka.agent.tv.caller_pictures import CallerPictures
    from vaka.agent.tv.people_list import PeopleList
    from vaka.agent.tv.viewing_log import ViewingLogClient

log = logging.getLogger(__name__)

#: The reason central and the caller get when the citizen presses Decline.
DECLINED = "declined by the citizen"

ScreenMode = Literal["window", "headless"]


class TvController(CallObserver):
    """What the TV shows, and what the citizen's presses do."""

    rings = True

    def __init__(
        self,
        *,
        settings: TvSection,
        screen_mode: ScreenMode,
        media: MediaSettings,
        link: UnitLink,
        hardware: Hardware,
        call: UnitCall,
        request: CitizenRequest,
        board: MessageBoard,
        acknowledge: Callable[[str], object],
        auto_answer: Callable[[], Sequence[AutoAnswerRule]] = list,
        staff_hours: Callable[[], StaffHours] = StaffHours,
        clock: Callable[[], float] = time.time,
        privacy: PrivacyMode | None = None,
        viewing_log: ViewingLogClient | None = None,
        pictures: CallerPictures | None = None,
        people: PeopleList | None = None,
    ) -> None:
        self.settings = settings
        self.screen_mode = screen_mode
        self.link = link
        self.hardware = hardware
        self.call = call
        self.board = board
        self.acknowledge = acknowledge
        self.staff_hours = staff_hours
        #: Unix time now (a test freezes it to see the screen at a given hour).
        self.clock = clock
        self.screen: Screen | None = None
        self.catalog = Catalog(settings.language)
        display = hardware.display
        self.standby = StandbyTimer(display, settings.idle_standby_s) if display else None
        self.troubles = Troubles(link, hardware, settings.notice_s)
        self.button = StaffButton(
            request, self.troubles, settings.request_timeout_s, self._wake_tv, self.refresh
        )
        #: When the first remote video frame of the current call was put on the screen
        #: (``time.perf_counter()``), for the benchmark.
        self.first_remote_shown: float | None = None
        #: the caller's picture and voice, and the microphone, in the current call
        self.call_media = CallMedia(media, self._remote_frame)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: list[Callable[[], None]] = []
        self.privacy_screens = PrivacyScreens.of(privacy, viewing_log, self, settings)
        #: the citizen's "do not disturb for the evening" (contacts' calls only)
        self.quiet = DoNotDisturb(settings.quiet_until)
        self.incoming = IncomingCall.of(self, auto_answer, pictures)
        #: the People screen (``[tv] people``): the citizen calls one of their contacts
        self.people = PeopleScreen.of(people, request, self, settings)

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Open the screen, follow what it depends on, and show what is due."""
        loop = asyncio.get_running_loop()
        size = (self.settings.width, self.settings.height)
        if self.screen_mode == "window":
            screen: Screen = TvScreen(self.catalog, self._on_press, loop=loop, size=size)
            await asyncio.to_thread(screen.start)  # type: ignore[attr-defined]
        else:
            screen = HeadlessScreen(self.catalog, self._on_press, loop=loop, size=size)
        self.screen = screen
        self._unsubscribe += [
            self.link.subscribe_state(lambda _s: self.refresh()),
            self.call.subscribe(self._on_call),
            self.board.subscribe(self._on_message),
        ]
        for device in (self.hardware.camera, self.hardware.sound):
            if device is not None:
                self._unsubscribe.append(device.subscribe(lambda _s: self.refresh()))
        self._tasks.add(loop.create_task(self._clock()))
        if self.privacy_screens is not None:
            self._unsubscribe.append(self.privacy_screens.start())
        self.refresh()

    async def close(self) -> None:
        """Take the screen down and stop every timer."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for task in self._tasks:
            task.cancel()
        self.incoming.stop_countdown()
        self.button.close()
        if self.people is not None:
            self.people.close()
        if self.standby is not None:
            self.standby.hold()
        self.call_media.stop()
        if self.screen is not None:
            await asyncio.to_thread(self.screen.close)

    def set_language(self, language: str) -> None:
        """Use ``language`` from now on (from the signed configuration)."""
        if language == self.catalog.language:
            return
        self.catalog = Catalog(language)
        if self.screen is not None:
            self.screen.catalog = self.catalog
            self.refresh()

    # ------------------------------------------------------------ what to show

    def _due(self) -> ScreenState:
        phase = self.call.phase
        if phase is CallPhase.IN_CALL:
            return InCall(self.call_media.picture, self_view(self.call))
        if phase is CallPhase.RINGING and self.incoming.shown is not None:
            return self.incoming.shown
        hours, now = self.staff_hours(), self.clock()
        calling = self.people.calling if self.people is not None else None
        if phase is CallPhase.REQUESTING or (
            phase is CallPhase.CONNECTING
            and (self.call.purpose == "citizen_call" or calling is not None)
        ):
            return Calling(night=hours.is_night(now), callee=calling.name if calling else None)
        message = self.board.current
        if message is not None:
            return Message(message.text, message.picture)
        trouble = self.troubles.current()
        if trouble is not None:
            return Trouble(trouble, night=hours.is_night(now), name=self.troubles.name)
        if self.people is not None and (people := self.people.due()) is not None:
            return people
        screens = self.privacy_screens  # the privacy mode's screens, given the mode
        if screens is None or (shown := screens.due(hours.reach(now))) is None:
            reach, phone = hours.reach(now), hours.day_phone
            offers = screens is not None, self.people is not None
            return Idle(hours.local(now), reach, phone, *offers)
        return shown

    def refresh(self) -> None:
        """Show what is due now."""
        if self.screen is None or self.screen.closed:
            return
        self.screen.show(self._due())

    def _on_call(self, phase: CallPhase) -> None:
        if phase is not CallPhase.REQUESTING:
            self.button.settle()
            if self.people is not None:
                self.people.settle(ended=phase is CallPhase.IDLE)
        if phase is CallPhase.IN_CALL and self.standby is not None:
            self.standby.hold()
        self.refresh()
        if phase is CallPhase.IDLE:
            self._idle_later()

    def _on_message(self, message: ShownMessage | None) -> None:
        if message is None:
            self.refresh()
            self._idle_later()
            return
        # Shown until the citizen acknowledges it (or the inbox takes it back), on a woken TV.
        if self.standby is not None:
            self.standby.hold()
        self._spawn(self._show_woken())

    async def _show_woken(self) -> None:
        await self._wake_tv()
        self.refresh()

    async def _clock(self) -> None:
        """Redraw the idle clock, drop a notice that has run its time, and keep the self view
        moving in a call whose caller sends no picture (otherwise each of theirs redraws)."""
        while True:
            await asyncio.sleep(0.2)
            state = self.screen.state if self.screen else None
            clock = isinstance(state, Idle | Trouble) and int(time.time() * 5) % 5 == 0
            if clock or (isinstance(state, InCall) and self.call_media.picture_stale()):
                self.refresh()

    async def _wake_tv(self) -> None:
        if self.standby is None:
            return
        try:
            await self.standby.wake()
        except HardwareError as err:
            log.warning("could not wake the TV: %s", err)

    def _idle_later(self) -> None:
        """The TV may go back to standby after the idle time (if the unit switched it on)."""
        if self.standby is not None and not self._busy():
            self.standby.arm()

    def _busy(self) -> bool:
        return self.call.busy or self.board.current is not None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ presses

    def _on_press(self, button: ButtonId) -> None:
        if self.standby is not None:
            self.standby.touch()
        match button:
            case ButtonId.ANSWER:
                self.incoming.decide(None)
            case ButtonId.DECLINE:
                self.incoming.decide(DECLINED)
            case ButtonId.CANCEL_AUTO_ANSWER:
                self.incoming.stop_countdown()
            case ButtonId.DO_NOT_DISTURB:
                self.quiet.start(self.staff_hours().local(self.clock()))
                self.incoming.decide(DO_NOT_DISTURB)
            case ButtonId.HANG_UP:
                session = self.call.session
                if session is not None:
                    self._spawn(session.end("hung up by the citizen"))
                elif self.call.phase is CallPhase.REQUESTING:
                    self._spawn(self.button.cancel("cancelled by the citizen"))
            case ButtonId.CALL_STAFF:
                # The same request by day and by night: central rings whoever is on duty.
                if not self._busy():
                    self._spawn(self.button.press())
            case ButtonId.ACKNOWLEDGE:
                message = self.board.current
                if message is not None:
                    self.board.hide(message.mid)
                    self.acknowledge(message.mid)
            case _ if self.people is not None and button in PeopleScreen.BUTTONS:
                if not self._busy():
                    self.people.press(button)
            case _ if self.privacy_screens is not None and button in PrivacyScreens.BUTTONS:
                self.privacy_screens.press(button)

    # ------------------------------------------------------------ incoming calls

    async def admit(self, claims: TicketClaims) -> str | None:
        """Ring (:class:`~vaka.agent.tv.incoming.IncomingCall`): the citizen's answer, or why
        not."""
        if self.screen is None:
            return "the unit's screen is not ready"
        try:
            return await self.incoming.admit(claims)
        finally:
            self._idle_later()

    # ------------------------------------------------------------ the call

    def extra_tracks(self, claims: TicketClaims, offered: frozenset[str]) -> list[MediaStreamTrack]:
        """The microphone, when the caller offers audio."""
        return self.call_media.microphone(offered)

    def remote_track(self, session: CallSession, track: MediaStreamTrack) -> None:
        """The caller's picture goes full screen, their voice to the speaker."""
        self.call_media.take(track)

    def _remote_frame(self) -> None:
        session = self.call.session
        if session is None or self.call.phase is not CallPhase.IN_CALL:
            return
        if self.first_remote_shown is None:
            self.first_remote_shown = time.perf_counter()
            self._spawn(report_first_picture(self.link, session))
        self.refresh()

    def call_connected(self, session: CallSession) -> None:
        """The call is up: the in-call screen follows (the unit's call state changes next)."""
        self.first_remote_shown = None

    def call_ended(self, session: CallSession) -> None:
        """Stop the caller's media; the screen and the TV's standby follow the call state."""
        self.call_media.stop()

    def request_update(
        self, request_id: str, kind: str, state: str | None, reason: str | None
    ) -> None:
        """Central's word on the citizen's call: keep ringing, or say nobody can answer."""
        log.info("citizen call %s: %s %s (%s)", request_id, kind, state or "", reason or "")
        if self.people is not None and self.people.calling is not None:
            self.people.answered(kind, state)
        else:
            self.button.answered(kind, state)
