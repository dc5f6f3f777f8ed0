"""The TV unit's controller: decides what the citizen's TV shows and what their presses do.

It sits between the call machinery (:class:`~vaka.agent.call.manager.CallManager`, whose
:class:`~vaka.agent.call.observer.CallObserver` it is), the screen
(:mod:`vaka.agent.ui`), the TV set (woken and put back to standby over HDMI-CEC by a
:class:`~vaka.agent.hw.cec.StandbyTimer`) and the messages from the staff.

What is shown, most important first: a call (incoming, in progress, or the citizen calling the
night staff), a message waiting for its acknowledgement, trouble that keeps a call from being
made or taken (no connection, no camera), a notice after a citizen call nobody could take, and
otherwise the idle screen with the clock and the night-staff button.

Everything runs on the agent's event loop; the screen delivers presses there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiortc import MediaStreamTrack

from vaka.agent.call.observer import CallObserver
from vaka.agent.hw.camera import CameraPresence
from vaka.agent.hw.cec import StandbyTimer
from vaka.agent.hw.hardware import Hardware
from vaka.agent.hw.sound import SoundPresence
from vaka.agent.link import LinkState, UnitLink
from vaka.agent.media.settings import MediaSettings
from vaka.agent.tv.autoanswer import auto_answer_countdown
from vaka.agent.tv.call_media import CallMedia
from vaka.agent.tv.shown_message import ShownMessage
from vaka.agent.ui import (
    ButtonId,
    Calling,
    Catalog,
    HeadlessScreen,
    Idle,
    InCall,
    Incoming,
    Message,
    Screen,
    ScreenState,
    Trouble,
    TvScreen,
)
from vaka.errors import HardwareError, LinkError
from vaka.protocol.messages import EventMessage, EventPayload
from vaka.protocol.topics import Channel
from vaka.provisioning.bundles import AutoAnswerRule
from vaka.provisioning.tickets import TicketClaims

if TYPE_CHECKING:
    from vaka.agent.call.manager import CallManager
    from vaka.agent.call.session import CallSession
    from vaka.agent.config import TvSection

log = logging.getLogger(__name__)

#: The reason central and the caller get when the citizen presses Decline.
DECLINED = "declined by the citizen"


class TvController(CallObserver):
    """What the TV shows, and what the citizen's presses do."""

    rings = True

    def __init__(
        self,
        *,
        settings: TvSection,
        media: MediaSettings,
        link: UnitLink,
        hardware: Hardware,
        auto_answer: Callable[[], Sequence[AutoAnswerRule]] = list,
        simulate: bool = False,
    ) -> None:
        self.settings = settings
        self.simulate = simulate
        self.media = media
        self.link = link
        self.hardware = hardware
        self.auto_answer = auto_answer
        self.calls: CallManager | None = None
        self.screen: Screen | None = None
        self.catalog = Catalog(settings.language)
        display = hardware.display
        self.standby = StandbyTimer(display, settings.idle_standby_s) if display else None
        #: Called with the message id when the citizen acknowledges a message.
        self.on_acknowledge: Callable[[str], object] = lambda _mid: None
        #: When the first remote video frame of the current call was put on the screen
        #: (``time.perf_counter()``), for the benchmark.
        self.first_remote_shown: float | None = None
        self._answer: asyncio.Future[str | None] | None = None
        self._countdown: asyncio.Task[None] | None = None
        self._incoming: Incoming | None = None
        self._session: CallSession | None = None
        self._calling = False
        self._request_timer: asyncio.Task[None] | None = None
        self._notice: tuple[str, float] | None = None  # trouble key, until (monotonic)
        self._message: ShownMessage | None = None
        #: the caller's picture and voice, and the microphone, in the current call
        self.call_media = CallMedia(media, self._remote_frame, simulate=simulate)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: list[Callable[[], None]] = []

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Open the screen and show what is due."""
        loop = asyncio.get_running_loop()
        mode = self.settings.screen
        size = (self.settings.width, self.settings.height)
        if mode == "auto":
            import os

            mode = "window" if os.environ.get("DISPLAY") else "headless"
            if mode == "headless" and not self.simulate:
                log.warning("no $DISPLAY: the TV screen is not shown (set up the display session)")
        if mode == "window":
            screen: Screen = TvScreen(self.catalog, self._on_press, loop=loop, size=size)
            await asyncio.to_thread(screen.start)  # type: ignore[attr-defined]
        else:
            screen = HeadlessScreen(self.catalog, self._on_press, loop=loop, size=size)
        self.screen = screen
        self._unsubscribe.append(self.link.subscribe_state(lambda _s: self.refresh()))
        for device in (self.hardware.camera, self.hardware.sound):
            if device is not None:
                self._unsubscribe.append(device.subscribe(lambda _s: self.refresh()))
        self._tasks.add(loop.create_task(self._clock()))
        self.refresh()

    async def close(self) -> None:
        """Take the screen down and stop every timer."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for task in [*self._tasks, self._countdown, self._request_timer]:
            if task is not None:
                task.cancel()
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

    def _trouble(self) -> str | None:
        if self.link.state is not LinkState.ONLINE:
            return "no_connection"
        camera, sound = self.hardware.camera, self.hardware.sound
        if camera is not None and camera.state is CameraPresence.ABSENT:
            return "no_camera"
        if sound is not None and sound.state is SoundPresence.ABSENT:
            return "no_sound"
        if self._notice is not None:
            key, until = self._notice
            if time.monotonic() < until:
                return key
            self._notice = None
        return None

    def _due(self) -> ScreenState:
        if self._session is not None:
            return InCall(self.call_media.picture, self._self_view())
        if self._incoming is not None:
            return self._incoming
        if self._calling:
            return Calling()
        if self._message is not None:
            return Message(self._message.text, self._message.picture)
        trouble = self._trouble()
        if trouble is not None:
            return Trouble(trouble)
        return Idle()

    def refresh(self) -> None:
        """Show what is due now."""
        if self.screen is None or self.screen.closed:
            return
        self.screen.show(self._due())

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
        return bool(self._session or self._incoming or self._calling or self._message is not None)

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
                self._decide(None)
            case ButtonId.DECLINE:
                self._decide(DECLINED)
            case ButtonId.CANCEL_AUTO_ANSWER:
                self._stop_countdown()
            case ButtonId.HANG_UP:
                if self._session is not None:
                    self._spawn(self._session.end("hung up by the citizen"))
                elif self._calling:
                    self._spawn(self._cancel_request("cancelled by the citizen"))
            case ButtonId.CALL_STAFF:
                self._spawn(self._call_staff())
            case ButtonId.ACKNOWLEDGE:
                message = self._message
                if message is not None:
                    self._message = None
                    self.on_acknowledge(message.mid)
                    self.refresh()
                    self._idle_later()

    # ------------------------------------------------------------ incoming calls

    async def admit(self, claims: TicketClaims) -> str | None:
        """Ring: wake the TV, show who calls; answered by the citizen, by the auto-answer
        countdown, or declined."""
        if self.screen is None:
            return "the unit's screen is not ready"
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        countdown = auto_answer_countdown(self.auto_answer(), claims)
        self._incoming = Incoming(claims.name, claims.role, countdown)
        log.info(
            "incoming %s call from %s (%s)%s",
            claims.purpose,
            claims.name,
            claims.role,
            "" if countdown is None else f", answering by itself in {countdown} s",
        )
        await self._wake_tv()
        self.refresh()
        if countdown is not None:
            self._countdown = loop.create_task(self._count_down(countdown))
        try:
            return await self._answer
        finally:
            self._stop_countdown()
            self._incoming = None
            self._answer = None
            self.refresh()
            self._idle_later()

    async def _count_down(self, seconds: int) -> None:
        for left in range(seconds, 0, -1):
            if self._incoming is not None and self._incoming.countdown_s != left:
                self._incoming = replace(self._incoming, countdown_s=left)
                self.refresh()
            await asyncio.sleep(1.0)
        log.info("auto-answer: countdown ended")
        self._decide(None)

    def _stop_countdown(self) -> None:
        if self._countdown is not None:
            self._countdown.cancel()
            self._countdown = None
            if self._incoming is not None and self._incoming.countdown_s is not None:
                self._incoming = replace(self._incoming, countdown_s=None)
                self.refresh()

    def _decide(self, decision: str | None) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(decision)

    # ------------------------------------------------------------ the call

    def extra_tracks(self, claims: TicketClaims, offered: frozenset[str]) -> list[MediaStreamTrack]:
        """The microphone, when the caller offers audio."""
        return self.call_media.microphone(offered)

    def remote_track(self, session: CallSession, track: MediaStreamTrack) -> None:
        """The caller's picture goes full screen, their voice to the speaker."""
        self.call_media.take(track)

    def _remote_frame(self) -> None:
        if self._session is None:
            return
        if self.first_remote_shown is None:
            self.first_remote_shown = time.perf_counter()
            self._spawn(self._report_first_picture(self._session))
        self.refresh()

    async def _report_first_picture(self, session: CallSession) -> None:
        """Tell central when the citizen first saw the caller (support and benchmarks use it)."""
        detail: dict[str, str | float] = {
            "action": "picture_shown",
            "call_id": session.call_id,
            "at": round(time.time(), 3),
            "after_answer_ms": round((time.monotonic() - session.started_at) * 1000, 1),
        }
        with contextlib.suppress(LinkError):
            await self.link.publish_reliably(
                Channel.EVENTS, EventMessage(payload=EventPayload(kind="call", detail=detail))
            )

    def _self_view(self) -> Any:
        session = self._session
        capture = session.capture if session is not None else None
        frame = capture.latest if capture is not None else None
        return None if frame is None else frame.image

    def call_connected(self, session: CallSession) -> None:
        """The call is up: in-call screen (the picture follows)."""
        self._session = session
        self.first_remote_shown = None
        self._calling = False
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None
        if self.standby is not None:
            self.standby.hold()
        self.refresh()

    def call_ended(self, session: CallSession) -> None:
        """Back to whatever is due; the TV to standby after the idle time."""
        if self._session is session:
            self._session = None
        self.call_media.stop()
        self.refresh()
        self._idle_later()

    # ------------------------------------------------------------ the night-staff button

    async def _call_staff(self) -> None:
        if self._busy() or self.calls is None:
            return
        trouble = self._trouble()
        if trouble == "no_connection":
            self.refresh()
            return
        self._calling = True
        self._notice = None
        await self._wake_tv()
        self.refresh()
        try:
            await self.calls.request_staff()
        except LinkError as err:
            log.warning("citizen call could not be sent: %s", err)
            self._end_calling("no_connection")
            return
        if self._request_timer is not None:
            self._request_timer.cancel()
        self._request_timer = asyncio.get_running_loop().create_task(self._give_up_later())

    async def _give_up_later(self) -> None:
        await asyncio.sleep(self.settings.request_timeout_s)
        if self._calling:
            await self._cancel_request("nobody answered in time", notice="no_answer")

    async def _cancel_request(self, reason: str, notice: str | None = None) -> None:
        if self.calls is not None:
            with contextlib.suppress(LinkError):
                await self.calls.cancel_request(reason)
        self._end_calling(notice)

    def _end_calling(self, notice: str | None) -> None:
        self._calling = False
        if self._request_timer is not None and self._request_timer is not asyncio.current_task():
            self._request_timer.cancel()
        self._request_timer = None
        if notice is not None:
            self._notice = (notice, time.monotonic() + self.settings.notice_s)
        self.refresh()
        self._idle_later()

    def request_update(
        self, request_id: str, kind: str, state: str | None, reason: str | None
    ) -> None:
        """Central's word on the citizen's call: keep ringing, or say nobody can answer."""
        log.info("citizen call %s: %s %s (%s)", request_id, kind, state or "", reason or "")
        if kind == "state":
            return
        if not self._calling:
            return
        notice = "no_staff" if state in ("no_staff", "unanswered") else "no_answer"
        self._end_calling(notice)

    # ------------------------------------------------------------ messages

    def post_message(self, message: ShownMessage) -> None:
        """:meth:`show_message` from synchronous code (the inbox's ``show``)."""
        self._spawn(self.show_message(message))

    async def show_message(self, message: ShownMessage) -> None:
        """Wake the TV and show a message until the citizen acknowledges it (or it is taken
        back with :meth:`hide_message`)."""
        self._message = message
        if self.standby is not None:
            self.standby.hold()
        await self._wake_tv()
        self.refresh()

    def hide_message(self, mid: str) -> None:
        """Take a message off the screen (missed or expired)."""
        if self._message is not None and self._message.mid == mid:
            self._message = None
            self.refresh()
            self._idle_later()
